<?php
if (true) {
