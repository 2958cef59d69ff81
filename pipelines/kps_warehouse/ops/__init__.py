"""Operating the warehouse: lock and publish, status, the demo and the command line."""
