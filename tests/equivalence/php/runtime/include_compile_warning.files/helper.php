<?php
for ($i = 0; $i < 1; $i++) { switch ($i) { case 0: continue; } }
