"""The SQL models, shipped inside the wheel as package data of `kps_warehouse`."""
