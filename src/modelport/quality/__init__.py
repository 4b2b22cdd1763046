"""Model quality: reference profiles, drift statistics and feedback accounting. Pure: numpy in,
numbers out; the server keeps one of each per version (server/monitor.py)."""
