"""`mutask demo` and what it shows: the demo run (:mod:`.demo`), the system tables
(:mod:`.summary`) and the report with plots (:mod:`.report`, the only module that imports
matplotlib)."""
