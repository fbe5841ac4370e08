<?php
trigger_error('old stuff', E_USER_DEPRECATED);
