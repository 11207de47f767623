"""One module per page group; handlers raise domain errors or aiohttp HTTP errors."""
