"""Physics unit tests of the synthesizer's pieces against known numbers and analytic cases."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special

import stellarinf  # noqa: F401  (float64)
from stellarinf.synth import abundances, atmosphere, chemistry, continuum, lines, transfer
from stellarinf.synth.constants import AMU
from stellarinf.synth.data import linelist, partition_functions
from stellarinf.synth.voigt import voigt_core, voigt_h, voigt_profile
from stellarinf.wavelength import air_to_vacuum, vacuum_to_air


@pytest.fixture(scope="module")
def sun():
    atm = atmosphere.interpolate_atmosphere(5772.0, 4.438, 0.0, depth_index=np.arange(72))
    logeps = abundances.log_abundances(0.0)
    pops = chemistry.populations(atm.temperature, atm.gas_pressure, atm.electron_density, logeps)
    rho = pops.n_nuclei * abundances.mean_mass_per_nucleus(logeps) * AMU
    return atm, pops, rho


def test_voigt_matches_scipy_wofz():
    v, a = np.meshgrid(np.linspace(0.0, 100.0, 4001), np.logspace(-4, 1, 41))
    ref = scipy.special.wofz(v + 1j * a).real
    got = np.asarray(jax.jit(voigt_h)(jnp.asarray(a), jnp.asarray(v)))
    assert np.max(np.abs(got - ref) / ref) < 1e-4
    core = np.asarray(voigt_core(jnp.asarray(a[:, :321]), jnp.asarray(v[:, :321])))  # v ≤ 8
    assert np.max(np.abs(core - ref[:, :321]) / ref[:, :321]) < 5e-5


def test_voigt_core_real_arithmetic_is_weidemans_formula():
    """The core formula, written in real arithmetic for speed, is Weideman's complex rational form to rounding, and
    its 16-term version (the synthesizer's line cores) keeps the documented 2e-7 absolute error against wofz."""
    from stellarinf.synth.voigt import _WEIDEMAN, SQRT_PI

    v, a = np.meshgrid(np.linspace(-12.0, 12.0, 481), np.logspace(-4, 1, 26))
    for n_terms in (16, 24):
        ell, coeffs = _WEIDEMAN[n_terms]
        z = v + 1j * a
        zz = (ell + 1j * z) / (ell - 1j * z)
        poly = np.polyval(coeffs, zz)
        complex_form = np.real(2.0 * poly / (ell - 1j * z) ** 2 + (1.0 / SQRT_PI) / (ell - 1j * z))
        got = np.asarray(voigt_core(jnp.asarray(a), jnp.asarray(v), n_terms=n_terms))
        np.testing.assert_allclose(got, complex_form, rtol=1e-9, atol=1e-15)
    inner = np.abs(v) <= 8.0
    assert np.max(np.abs(got - scipy.special.wofz(v + 1j * a).real)[inner]) < 1e-10  # 24 terms
    core16 = np.asarray(voigt_core(jnp.asarray(a), jnp.asarray(v), n_terms=16))
    assert np.max(np.abs(core16 - scipy.special.wofz(v + 1j * a).real)[inner]) < 2e-7


def test_voigt_limits_normalisation_and_gradients():
    v = jnp.linspace(-3, 3, 7)
    np.testing.assert_allclose(voigt_h(0.0, v), np.exp(-(np.asarray(v) ** 2)), atol=1e-9)  # pure Gaussian
    x = jnp.linspace(-400, 400, 400001)
    area = float(jnp.trapezoid(voigt_profile(x, 1.0, 0.3), x))
    assert area == pytest.approx(1.0 - 2 * 0.3 / (np.pi * 400), rel=1e-4)  # minus the Lorentz tails beyond ±400
    g = jax.grad(lambda a, v: voigt_h(a, v), argnums=(0, 1))
    for a, vv in [(0.0, 0.0), (1e-4, 4.999), (1e-4, 5.0), (2.0, 30.0)]:
        assert np.all(np.isfinite(np.array(g(a, vv))))


def test_partition_functions_match_textbook():
    # Gray (2005) Table D.2 at θ = 5040/T = 1: log U(Fe I) = 1.43, log U(Fe II) = 1.63.
    lu = np.asarray(chemistry.log_partition_functions(jnp.array([5040.0]))) / np.log(10)
    assert lu[26, 0, 0] == pytest.approx(1.43, abs=0.05)
    assert lu[26, 1, 0] == pytest.approx(1.63, abs=0.05)
    assert partition_functions().temperature.min() >= 1000.0


def test_saha_matches_hand_formula_and_solar_iron_is_mostly_ionised(sun):
    atm, pops, _ = sun
    T, ne = 5800.0, 1.0e14
    log_u = chemistry.log_partition_functions(jnp.array([T]))
    u1, u2 = np.exp(np.asarray(log_u[26, 0, 0])), np.exp(np.asarray(log_u[26, 1, 0]))
    phi = 2 * 2.41466e15 * T**1.5 * (u2 / u1) * np.exp(-7.9024681 / (8.617333e-5 * T)) / ne
    frac = np.asarray(chemistry.ionisation_fractions(jnp.array([T]), jnp.array([ne]), log_u))[26, :, 0]
    assert frac[1] / frac[0] == pytest.approx(phi, rel=2e-3)
    # In the solar photosphere (τ_Ross = 1, T ≈ 6240 K) iron is > 90 % singly ionised (textbook: ~95 %).
    k = int(np.argmin(np.abs(np.asarray(atm.log_tau_ross))))
    fe = np.asarray(pops.species[26, :, k])
    assert 0.9 < fe[1] / fe.sum() < 0.99
    # Number conservation: stages sum to the element's share of all nuclei.
    share = np.asarray(abundances.number_fractions(abundances.log_abundances(0.0)))[26]
    assert fe.sum() == pytest.approx(share * float(pops.n_nuclei[k]), rel=1e-10)


def test_hminus_cross_section_textbook_values():
    sig = np.asarray(continuum.hminus_bf_cross_section(jnp.linspace(4000.0, 16000.0, 1201)))
    lam = np.linspace(4000.0, 16000.0, 1201)
    # Wishart (1979): peak ≈ 4.0e-17 cm² near 8500 Å; 2.9e-17 at 5000 Å; detachment threshold 16419 Å.
    assert 8000 < lam[np.argmax(sig)] < 9200
    assert sig.max() == pytest.approx(4.0e-17, rel=0.05)
    assert float(continuum.hminus_bf_cross_section(jnp.array([5000.0]))[0]) == pytest.approx(2.9e-17, rel=0.05)
    assert float(continuum.hminus_bf_cross_section(jnp.array([16500.0]))[0]) == 0.0


def test_continuum_optical_depth_matches_rosseland_scale_in_sun(sun):
    # H⁻ dominates the solar optical continuum; integrating our continuum opacity through the ATLAS9
    # solar model must give τ(5000 Å) ≈ τ_Ross near τ = 1 (ATLAS's Rosseland mean also has lines).
    atm, pops, rho = sun
    wl = jnp.array([5000.0, 6500.0])
    a, s = continuum.continuum_opacity(wl, atm.temperature, atm.electron_density, pops)
    tau = np.asarray(transfer.optical_depth(a + s, rho, atm.rhox))
    k = int(np.argmin(np.abs(np.asarray(atm.log_tau_ross))))
    assert -0.25 < np.log10(tau[k, 0]) < 0.05
    hm = continuum.hminus_opacity(wl, atm.temperature, atm.electron_density, pops.n_hi, pops.n_hminus)
    assert float(hm[k, 1] / (a + s)[k, 1]) > 0.9


def test_flux_of_isothermal_atmosphere_is_pi_b():
    # Semi-infinite isothermal slab: I = B for every μ, so F = π B exactly.
    tau = jnp.logspace(-6, 3, 60)[:, None] * jnp.ones((1, 3))
    S = jnp.full((60, 3), 2.5)
    assert np.allclose(np.asarray(transfer.emergent_flux(tau, S)), np.pi * 2.5, rtol=1e-5)  # τ_top = 1e-6 is missing
    # Linear source function S = a + b τ (Eddington–Barbier): F = π (a + 2b/3).
    S_lin = 1.0 + 3.0 * tau
    assert np.allclose(np.asarray(transfer.emergent_flux(tau, S_lin)), np.pi * (1.0 + 2.0), rtol=1e-3)


def _single_line_ew(sun, loggf):
    atm, pops, rho = sun
    wl = np.exp(np.linspace(np.log(6596.0), np.log(6604.0), 3000))
    data = lines.LineData(
        np.array([6600.0]),
        np.array([26]),
        np.array([0]),
        np.array([3.0]),
        np.array([loggf]),
        np.array([55.845]),
        np.array([2.223e15 / 6600.0**2]),
        np.array([-31.5]),
        np.array([1e-6]),
        lines.unsold_log_vdw(np.array([10**-31.5]), np.array([55.845])),
        np.array([0.3]),
        np.array([3 * 26 + 0]),  # the absorber: Fe I
    )
    pts = lines.build_points(wl, data, np.array([150.0]))
    T, ne = atm.temperature, atm.electron_density
    a, s = continuum.continuum_opacity(jnp.asarray(wl), T, ne, pops)
    alpha_l = lines.line_opacity(pts, lines.line_params(data, T, ne, pops, 1.0), len(wl))
    S = transfer.planck(jnp.asarray(wl), T)
    f = transfer.emergent_flux(transfer.optical_depth(a + s + alpha_l, rho, atm.rhox), S)
    fc = transfer.emergent_flux(transfer.optical_depth(a + s, rho, atm.rhox), S)
    return float(np.trapezoid(1.0 - np.asarray(f / fc), wl))


def test_equivalent_width_linear_in_gf_on_weak_line_part(sun):
    ew1 = _single_line_ew(sun, -5.0)
    ew2 = _single_line_ew(sun, -5.0 + np.log10(2.0))
    assert 1e-4 < ew1 < 5e-3  # a weak line: 0.1–5 mÅ
    assert ew2 / ew1 == pytest.approx(2.0, rel=0.01)
    ew_strong = _single_line_ew(sun, -1.0)  # saturated: far below 10^4 × the weak one
    assert ew_strong / ew1 < 0.2 * 1e4


def test_broadening_kernels_conserve_flux():
    from stellarinf.observe.broadening import broaden, velocity_step
    from stellarinf.synth import fine_grid

    wl = fine_grid(6500.0, 6520.0)
    flux = 1.0 - 0.6 * np.exp(-0.5 * ((wl - 6510.0) / 0.05) ** 2)
    ew0 = np.trapezoid(1 - flux, wl)
    dv = velocity_step(wl)
    for kw in (
        {"resolution": 28000.0},
        {"vsini": 20.0},
        {"vmacro": 5.0},
        {"resolution": 11500.0, "vsini": 5.0, "vmacro": 3.0},
    ):
        out = np.asarray(broaden(flux, dv, **kw))
        assert np.trapezoid(1 - out, wl) == pytest.approx(ew0, rel=1e-4), kw
        assert out.min() > flux.min()  # really broadened


def test_air_vacuum_round_trip_and_linelist_wavelengths():
    ll = linelist()
    lam = ll.wavelength[::50]
    np.testing.assert_allclose(air_to_vacuum(vacuum_to_air(lam)), lam, atol=1e-7)
    air = np.array([6564.61 / 1.000276])  # Hα: 6562.80 Å in air ↔ 6564.61 Å in vacuum
    assert float(vacuum_to_air(np.array([6564.61]))[0]) == pytest.approx(6562.80, abs=0.01)
    del air
    np.testing.assert_allclose(
        air_to_vacuum(ll.wavelength_air if hasattr(ll, "wavelength_air") else vacuum_to_air(lam)), lam, atol=2e-3
    )


def test_balmer_lines_integrate_to_their_oscillator_strengths(sun):
    """∫ α dλ of a hydrogen line = (π e²/m c) f n_l (λ²/c) (1 − e^{−hν/kT}): the profile is normalised, whatever
    its Stark / self-broadening parts; Hβ's f is 0.1193 (Wiese & Fuhr 2009) against Hα's 0.6407."""
    from stellarinf.synth import hydrogen
    from stellarinf.synth.constants import C_CGS, CHI_H, HC_EV_ANGSTROM, K_B_EV, PI_E2_MC

    atm, pops, _ = sun
    k = 40  # a depth in the line-forming region
    T, ne = atm.temperature[k : k + 1], atm.electron_density[k : k + 1]
    n_hi, log_u = pops.n_hi[k : k + 1], pops.log_u[1, 0][k : k + 1]
    ha, hb = (h for h in hydrogen.HYDROGEN_LINES if h.n_lower == 2)
    # Hβ and Hα at NIST's vacuum centroids, not the Rydberg formula's 4862.74 / 6564.70 (see hydrogen._WAVELENGTH)
    assert hb.wavelength == pytest.approx(4862.68, abs=0.01) and ha.wavelength == pytest.approx(6564.61, abs=0.01)
    assert hb.f_value == 0.1193 and ha.f_value == 0.6407
    integrals = {}
    for h in (ha, hb):
        # the Holtsmark wings fall as Δλ^-5/2: ±3000 Å leaves < 0.1 % of the area outside
        dl = np.concatenate([-np.geomspace(3000.0, 1e-4, 40000), np.geomspace(1e-4, 3000.0, 40000)])
        alpha = np.asarray(hydrogen.hydrogen_line_opacity(h, h.wavelength + dl, T, ne, n_hi, log_u, 1.0))[0]
        n_l = float(n_hi[0] * 8.0 * np.exp(-CHI_H * 0.75 / (K_B_EV * T[0]) - log_u[0]))
        stim = -np.expm1(-HC_EV_ANGSTROM / (h.wavelength * K_B_EV * T[0]))
        expected = PI_E2_MC * h.f_value * n_l * h.wavelength**2 * 1e-8 / C_CGS * stim
        integrals[h.n_upper] = np.trapezoid(alpha, dl) / expected
    assert integrals[3] == pytest.approx(1.0, abs=2e-3) and integrals[4] == pytest.approx(1.0, abs=2e-3)
