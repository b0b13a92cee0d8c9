"""Capacity planning from measured unit costs (issue 16).

benchmarks/*.py --write-unit-costs --> benchmarks/unit_costs.json (unit_costs.UnitCosts, each figure with
                                       its Source: command, date, machine, measured or an assumption)
presets.py     dataset shapes (K400, K700, SSv2: videos, duration, fps, resolution)
plan.py        arithmetic only: UnitCosts + DatasetShape + StorageLayout + ClusterShape -> CapacityPlan
jobs/capacity.py  prints the plan, every figure naming the unit cost it came from
"""
