<?php
function helper() {}
