<?php
file_put_contents('php://stderr', "via stream\n");
