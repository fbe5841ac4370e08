<?php
function helper() { throw new LogicException('from helper'); }
