<?php
echo (1));
