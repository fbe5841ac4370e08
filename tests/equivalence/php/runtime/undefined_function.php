<?php
nope();
