"""MCP Tool Registry: semantic tool discovery and a federated tool gateway."""

__version__ = "0.1.0"
