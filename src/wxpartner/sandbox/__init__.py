"""Setting the sandbox up: key material, the first-run bootstrap, scenario files, reset."""
