"""Plain ``nn.Module`` classes with keyword arguments: backbones and the stage networks."""
