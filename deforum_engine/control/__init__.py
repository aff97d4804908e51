"""ControlNet units and masks: the units' settings and preprocessors, mask pictures and expressions.

units.py reads Deforum's cn_1 .. cn_5 settings; preprocess.py turns pictures into control maps;
masks.py holds the mask image steps; mask_expressions.py parses Deforum's composable masks;
sources.py reads control and mask pictures and videos frame by frame.
"""
