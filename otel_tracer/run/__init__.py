"""Running the user's program under a recorder: ``runner`` executes it as
Python would, ``follow`` records its child processes (with ``bootstrap``), and
``sigterm`` makes sure a SIGTERM's handler runs."""
