//! Helpers the tier binaries share. Tests never spawn services or pick ports
//! themselves: they ask the drivers; what is here only glues test code.
