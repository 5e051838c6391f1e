mtm_node_fail "@update@ is not installed; the database driver verifies the server with the system trust store, so the CA must be added there (install @package@)"
