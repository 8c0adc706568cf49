"""Simulation: seeded traffic, the demo, bench workloads.

* :mod:`~streammon.sim.traffic_model` — seeded serving traffic with an injected regression;
* :mod:`~streammon.sim.serve` — that traffic through a real router and publisher;
* :mod:`~streammon.sim.demo` and :mod:`~streammon.sim.demo_timeline` — ``streammon demo``;
* :mod:`~streammon.sim.join_workload` — a deterministic join workload and its exact result;
* :mod:`~streammon.sim.cell_draws` and :mod:`~streammon.sim.operating_points` — seeded
  rollouts for the statistics' operating characteristics.
"""
