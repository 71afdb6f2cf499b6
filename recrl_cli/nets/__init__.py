"""Plain ``nn.Module`` networks: embedding and MLP layers, the MTL bases (``nets.mtl``), FLOP counting."""
