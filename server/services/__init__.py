"""Domain logic of the server; HTTP handlers stay thin and call these."""
