"""``python -m snakepit_bridge.worker --adapter module.Class [--fd 3] ...``

See :func:`snakepit_bridge._config.parse_args` for the options.
"""

from ._worker import WorkerConfig, main, parse_args, run

__all__ = ["WorkerConfig", "main", "parse_args", "run"]

if __name__ == "__main__":
    main()
