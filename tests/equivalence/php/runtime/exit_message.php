<?php
exit("goodbye\n");
