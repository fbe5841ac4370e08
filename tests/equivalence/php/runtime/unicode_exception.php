<?php
echo "ünïcödé ✓\n";
throw new RuntimeException('héllo 日本語');
