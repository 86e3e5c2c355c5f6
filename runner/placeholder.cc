namespace gearrun::runner {}
