"""Command-line interface: ``segmentai <command>``. Each command is a thin wrapper over the core."""
