"""gpvae.scene: the demo scene simulator (Sentinel-1/2 time series over farmland).

Entry points: :func:`gpvae.scene.config.scene_config` (defaults + validation) and
:func:`gpvae.scene.simulate.simulate_tile` (writes Theia L2A, S1Tiling, parcels.gpkg and
truth_S2.nc). Modules: config, seeding, grid, acquisitions, parcels, weather, phenology,
spectra, clouds, sar, simulate.
"""
