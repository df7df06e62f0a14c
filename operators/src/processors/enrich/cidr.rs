//! CIDR networks over 128 bits (IPv4 mapped): prefix masks and the parsing
//! of a table's network keys.

/// The mask of a prefix of `length` bits over 128.
pub(super) fn mask(length: u32) -> u128 {
    if length == 0 {
        0
    } else {
        u128::MAX << (128 - length)
    }
}

/// `(network, prefix length)` over 128 bits of a CIDR range or address,
/// IPv4 mapped.
pub(super) fn parse_cidr(text: &str) -> Result<(u128, u32), String> {
    let (address, length) = match text.split_once('/') {
        Some((address, length)) => (address, Some(length)),
        None => (text, None),
    };
    let address: std::net::IpAddr = address
        .trim()
        .parse()
        .map_err(|_| format!("key: {text:?} is not a network (try 10.0.0.0/8)"))?;
    let (bits, offset) = match address {
        std::net::IpAddr::V4(_) => (32, 96),
        std::net::IpAddr::V6(_) => (128, 0),
    };
    let length = match length {
        None => bits,
        Some(length) => length
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|length| *length <= bits)
            .ok_or_else(|| format!("key: {text:?} has a bad prefix length (0 to {bits})"))?,
    } + offset;
    let network = u128::from_be_bytes(crate::row::Ip::from(address).0);
    if network & !mask(length) != 0 {
        return Err(format!(
            "key: {text:?} has host bits set (the network is {}/{})",
            std::net::IpAddr::from((network & mask(length)).to_be_bytes()).to_canonical(),
            length - offset
        ));
    }
    Ok((network, length))
}
