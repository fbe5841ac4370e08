<?php
use Foo\Bar;
use Baz\Bar;
