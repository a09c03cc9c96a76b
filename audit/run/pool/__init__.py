"""Worker processes: scheduling, core budget, fork servers, background priority.

pool (the controller loop, `Pool`) asks scheduler what starts next, keeps its books in
budget (cores) and estimates (seconds), hands each worker to a session (drive one child:
its units, events, deadlines) with parking for the idle ones; child is one worker process,
events what it writes back, task the contract with the runner (`Hooks`); forkserver and
priority start workers fast and in the background.

Knows the worker only by its module path; may import audit.scenarios (to preload them).
"""
