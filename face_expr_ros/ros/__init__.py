"""The ROS 2 side: the node (:mod:`.node`), its parameter table (:mod:`.parameters`) and statistics
(:mod:`.stats`), message conversion (:mod:`.convert`) and the demo (:mod:`.demo`). Everything it
computes comes from core/; nothing in core/, training/ or offline/ imports this package."""
