"""``python -m latplan.web.worker``: the planning worker process (settings from the environment)."""

from latplan.web.jobs import main

if __name__ == "__main__":
    main()
