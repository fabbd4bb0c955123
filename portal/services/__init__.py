"""Domain logic shared by the console, the API, the CLI and the jobs."""
