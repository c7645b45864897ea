"""rob_gan_jax: Rob-GAN (Liu & Hsieh, CVPR 2019; arXiv 1807.10454) in JAX/Flax."""
