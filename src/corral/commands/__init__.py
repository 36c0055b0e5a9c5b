"""The CLI's command groups, one module per concern; heavy imports stay inside the commands."""
