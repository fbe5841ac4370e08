<?php
goto inside;
while (true) {
  inside:
  break;
}
