printf '%s\n' '@update@ is not installed; system trust left as it is'
