"""The harness: runs an agent declared in one YAML file, with the governance kernel on every call."""
