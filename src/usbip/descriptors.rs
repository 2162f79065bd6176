//! USB descriptors of a FIDO HID device (USB 2.0 §9.6, HID 1.11 §6.2, CTAP 2.1 §11.2.8).

/// The FIDO report descriptor (CTAP 2.1 §11.2.8.1): usage page 0xF1D0, usage 0x01,
/// 64-byte input (usage 0x20) and output (usage 0x21) reports, no report IDs. This alone
/// is what libfido2 and systemd's fido_id look for to call a hidraw node a security key.
pub const REPORT_DESCRIPTOR: [u8; 34] = [
    0x06, 0xd0, 0xf1, // Usage Page (FIDO Alliance)
    0x09, 0x01, //       Usage (CTAPHID)
    0xa1, 0x01, //       Collection (Application)
    0x09, 0x20, //         Usage (Input Report Data)
    0x15, 0x00, //         Logical Minimum (0)
    0x26, 0xff, 0x00, //   Logical Maximum (255)
    0x75, 0x08, //         Report Size (8)
    0x95, 0x40, //         Report Count (64)
    0x81, 0x02, //         Input (Data, Var, Abs)
    0x09, 0x21, //         Usage (Output Report Data)
    0x15, 0x00, //         Logical Minimum (0)
    0x26, 0xff, 0x00, //   Logical Maximum (255)
    0x75, 0x08, //         Report Size (8)
    0x95, 0x40, //         Report Count (64)
    0x91, 0x02, //         Output (Data, Var, Abs)
    0xc0, //             End Collection
];

/// Interrupt endpoints: IN 0x81 and OUT 0x01, 64 bytes, polled every 5 ms (a host
/// timing value only; vhci does no interval timing).
pub const EP_IN: u8 = 0x81;
pub const EP_OUT: u8 = 0x01;
const MAX_PACKET: u16 = 64;
const INTERVAL_MS: u8 = 5;

pub const DESC_DEVICE: u8 = 0x01;
pub const DESC_CONFIGURATION: u8 = 0x02;
pub const DESC_STRING: u8 = 0x03;
pub const DESC_HID: u8 = 0x21;
pub const DESC_REPORT: u8 = 0x22;

/// String descriptor indexes.
const STR_MANUFACTURER: u8 = 1;
const STR_PRODUCT: u8 = 2;
const STR_SERIAL: u8 = 3;

/// What identifies a USB device to the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceIdentity {
    pub vendor_id: u16,
    pub product_id: u16,
    /// bcdDevice: the device release number.
    pub device_release: u16,
    pub manufacturer: String,
    pub product: String,
    pub serial: String,
}

impl DeviceIdentity {
    /// The 18-byte device descriptor. Full speed with bMaxPacketSize0 = 64.
    pub fn device_descriptor(&self) -> [u8; 18] {
        let v = self.vendor_id.to_le_bytes();
        let p = self.product_id.to_le_bytes();
        let d = self.device_release.to_le_bytes();
        [
            18,
            DESC_DEVICE,
            0x00,
            0x02, // bcdUSB 2.00
            0x00,
            0x00,
            0x00, // class/subclass/protocol: per interface
            64,   // bMaxPacketSize0
            v[0],
            v[1],
            p[0],
            p[1],
            d[0],
            d[1],
            STR_MANUFACTURER,
            STR_PRODUCT,
            STR_SERIAL,
            1, // one configuration
        ]
    }

    /// Configuration + interface + HID + two endpoint descriptors (41 bytes).
    pub fn configuration_descriptor(&self) -> Vec<u8> {
        let report_len = (REPORT_DESCRIPTOR.len() as u16).to_le_bytes();
        let mp = MAX_PACKET.to_le_bytes();
        let mut v = vec![
            9,
            DESC_CONFIGURATION,
            0,
            0,    // wTotalLength, set below
            1,    // bNumInterfaces
            1,    // bConfigurationValue
            0,    // iConfiguration
            0x80, // bmAttributes: bus powered
            50,   // bMaxPower: 100 mA
            // Interface 0: HID, no boot protocol.
            9,
            0x04,
            0,
            0,
            2,
            0x03,
            0x00,
            0x00,
            0,
            // HID descriptor: HID 1.11, one report descriptor of report_len bytes.
            9,
            DESC_HID,
            0x11,
            0x01,
            0x00,
            1,
            DESC_REPORT,
            report_len[0],
            report_len[1],
            // Endpoints: interrupt IN and OUT.
            7,
            0x05,
            EP_IN,
            0x03,
            mp[0],
            mp[1],
            INTERVAL_MS,
            7,
            0x05,
            EP_OUT,
            0x03,
            mp[0],
            mp[1],
            INTERVAL_MS,
        ];
        let total = (v.len() as u16).to_le_bytes();
        v[2] = total[0];
        v[3] = total[1];
        v
    }

    /// The HID descriptor alone (GET_DESCRIPTOR(HID) to the interface).
    pub fn hid_descriptor(&self) -> Vec<u8> {
        self.configuration_descriptor()[18..27].to_vec()
    }

    /// String descriptor `index` (0 = the language list: US English only).
    pub fn string_descriptor(&self, index: u8) -> Option<Vec<u8>> {
        let s = match index {
            0 => return Some(vec![4, DESC_STRING, 0x09, 0x04]),
            STR_MANUFACTURER => &self.manufacturer,
            STR_PRODUCT => &self.product,
            STR_SERIAL => &self.serial,
            _ => return None,
        };
        // bLength is one byte: at most 126 UTF-16 code units fit.
        let units: Vec<u16> = s.encode_utf16().take(126).collect();
        let mut v = Vec::with_capacity(2 + 2 * units.len());
        v.push((2 + 2 * units.len()) as u8);
        v.push(DESC_STRING);
        for u in units {
            v.extend_from_slice(&u.to_le_bytes());
        }
        Some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ident() -> DeviceIdentity {
        DeviceIdentity {
            vendor_id: 0x1209,
            product_id: 0x0001,
            device_release: 0x0100,
            manufacturer: "vkey".into(),
            product: "vkey FIDO2".into(),
            serial: "ABC".into(),
        }
    }

    #[test]
    fn device_descriptor_bytes() {
        assert_eq!(
            ident().device_descriptor(),
            [
                18, 1, 0x00, 0x02, 0, 0, 0, 64, 0x09, 0x12, 0x01, 0x00, 0x00, 0x01, 1, 2, 3, 1
            ]
        );
    }

    #[test]
    fn configuration_descriptor_bytes() {
        let c = ident().configuration_descriptor();
        assert_eq!(c.len(), 41);
        assert_eq!(&c[..4], &[9, 2, 41, 0]);
        // HID descriptor: wDescriptorLength must equal the report descriptor's length.
        assert_eq!(&c[18..27], &[9, 0x21, 0x11, 0x01, 0, 1, 0x22, 34, 0]);
        assert_eq!(ident().hid_descriptor(), c[18..27].to_vec());
        assert_eq!(
            &c[27..],
            &[7, 5, 0x81, 3, 64, 0, 5, 7, 5, 0x01, 3, 64, 0, 5]
        );
    }

    #[test]
    fn report_descriptor_is_the_fido_one() {
        assert_eq!(REPORT_DESCRIPTOR.len(), 34);
        assert_eq!(&REPORT_DESCRIPTOR[..5], &[0x06, 0xd0, 0xf1, 0x09, 0x01]);
    }

    #[test]
    fn string_descriptors() {
        let i = ident();
        assert_eq!(i.string_descriptor(0), Some(vec![4, 3, 0x09, 0x04]));
        assert_eq!(
            i.string_descriptor(3),
            Some(vec![8, 3, b'A', 0, b'B', 0, b'C', 0])
        );
        assert_eq!(i.string_descriptor(9), None);
        let long = DeviceIdentity {
            product: "x".repeat(500),
            ..i
        };
        assert_eq!(long.string_descriptor(2).unwrap().len(), 254);
    }
}
