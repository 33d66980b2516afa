"""The appliance's object classes: one list, in one order, for every part (DESIGN.md §3).

Class ids are positions in this tuple: model cards map their classes onto it, the dataset
writer labels with it, scenarios and incident rules name classes from it.
"""

APPLIANCE_CLASSES: tuple[str, ...] = ("person", "bicycle", "car", "motorcycle", "bus", "truck")
