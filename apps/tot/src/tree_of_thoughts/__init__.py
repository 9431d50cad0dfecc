"""Tree-of-Thoughts MCP server: deliberate search over thoughts, and the platform's token issuer."""

__version__ = "0.1.0"
