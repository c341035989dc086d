"""The admin client: impact-metric charts and the server's stats."""
