just text, no php
