"""Physical constants (cgs) and standard atomic weights used by the synthesizer."""

from __future__ import annotations

import numpy as np

K_B = 1.380649e-16  # erg/K
K_B_EV = 8.617333262e-5  # eV/K
H_PLANCK = 6.62607015e-27  # erg s
C_CGS = 2.99792458e10  # cm/s
C_KMS = 2.99792458e5  # km/s
M_E = 9.1093837015e-28  # g
AMU = 1.66053906660e-24  # g
E_CHARGE = 4.80320471e-10  # esu
HC_EV_ANGSTROM = 12398.419843320026  # h c in eV Å
PI_E2_MC = np.pi * E_CHARGE**2 / (M_E * C_CGS)  # 0.026540 cm^2/s: classical line cross-section
SAHA_CONST = (2.0 * np.pi * M_E * K_B / H_PLANCK**2) ** 1.5  # 2.4147e15 cm^-3 K^-3/2
CHI_H = 13.598434599702  # eV, H I ionisation
CHI_HMINUS = 0.754195  # eV, H- electron affinity
N_ELEMENTS = 92

# Standard atomic weights (IUPAC, rounded), index Z-1.
ATOMIC_MASS = np.array(
    [
        1.008,
        4.0026,
        6.94,
        9.0122,
        10.81,
        12.011,
        14.007,
        15.999,
        18.998,
        20.180,
        22.990,
        24.305,
        26.982,
        28.085,
        30.974,
        32.06,
        35.45,
        39.948,
        39.098,
        40.078,
        44.956,
        47.867,
        50.942,
        51.996,
        54.938,
        55.845,
        58.933,
        58.693,
        63.546,
        65.38,
        69.723,
        72.630,
        74.922,
        78.971,
        79.904,
        83.798,
        85.468,
        87.62,
        88.906,
        91.224,
        92.906,
        95.95,
        98.0,
        101.07,
        102.91,
        106.42,
        107.87,
        112.41,
        114.82,
        118.71,
        121.76,
        127.60,
        126.90,
        131.29,
        132.91,
        137.33,
        138.91,
        140.12,
        140.91,
        144.24,
        145.0,
        150.36,
        151.96,
        157.25,
        158.93,
        162.50,
        164.93,
        167.26,
        168.93,
        173.05,
        174.97,
        178.49,
        180.95,
        183.84,
        186.21,
        190.23,
        192.22,
        195.08,
        196.97,
        200.59,
        204.38,
        207.2,
        208.98,
        209.0,
        210.0,
        222.0,
        223.0,
        226.0,
        227.0,
        232.04,
        231.04,
        238.03,
    ]
)
assert ATOMIC_MASS.shape == (N_ELEMENTS,)
BOHR = 5.29177210903e-9  # Bohr radius, cm
