"""Science: the study's mathematics - power-law fits with bootstrap CIs (fits), ensemble losses from
per-token log-probs (ensemble), recipes, asymptotes and data-efficiency multipliers (analysis), the
CPT stage's selection and multipliers (cpt). numpy, scipy, lmfit and pandas only; imports runtime."""
