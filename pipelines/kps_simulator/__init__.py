"""The stand-in KPS API: seeded failed-task data served over real HTTP on loopback."""

from kps_simulator.data import generate_project_id, generate_tasks
from kps_simulator.server import Simulator

__all__ = ["Simulator", "generate_project_id", "generate_tasks"]
