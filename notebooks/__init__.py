"""The report notebook, shipped inside the wheel as package data of `kps_warehouse`."""
