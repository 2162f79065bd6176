//! What the server exports: a USB HID device whose interrupt endpoints carry 64-byte
//! reports to and from a [`HidFunction`], and its endpoint 0 (control) requests.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Notify;

use super::descriptors::{
    DESC_CONFIGURATION, DESC_DEVICE, DESC_HID, DESC_REPORT, DESC_STRING, DeviceIdentity,
    REPORT_DESCRIPTOR,
};

/// One HID report's worth of bytes.
pub type HidReport = [u8; 64];

/// The function behind the HID interface for one USB session (from import to
/// disconnect). A sans-IO state machine: the server feeds it OUT reports and timer
/// ticks and takes IN reports from it. Work it does elsewhere (another thread) signals
/// completion through the `Notify` returned by [`ExportedDevice::attach`].
pub trait HidFunction: Send {
    /// An OUT report from the host (interrupt OUT or SET_REPORT).
    fn out_report(&mut self, report: &[u8], now: Instant);
    /// The next IN report, if one is ready.
    fn poll_in_report(&mut self) -> Option<HidReport>;
    /// When [`handle_timeout`](Self::handle_timeout) must be called; `None` = no timer.
    fn poll_timeout(&self) -> Option<Instant>;
    fn handle_timeout(&mut self, now: Instant);
    /// The `Notify` fired: collect what other threads finished.
    fn handle_wakeup(&mut self, now: Instant);
}

/// A device the server offers. `attach` is a power-up: it starts a fresh session.
pub trait ExportedDevice: Send + Sync {
    fn identity(&self) -> DeviceIdentity;
    fn attach(&self) -> (Box<dyn HidFunction>, Arc<Notify>);
    /// A signal that ends the current session when its value changes: the device was
    /// pulled out (a "replug"). The host sees the connection close, as when a cable
    /// is pulled. `None`: the device is never unplugged from our side.
    fn unplug_signal(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }
}

/// The outcome of a control request on endpoint 0.
#[derive(Debug, PartialEq, Eq)]
pub enum ControlOutcome {
    /// Success; IN data (cut to wLength by the server) or empty for OUT / no-data requests.
    Data(Vec<u8>),
    /// Success of an OUT request whose data is an output report (HID SET_REPORT).
    OutReport(Vec<u8>),
    /// Not supported: answered at once with -EPIPE, never left pending (usbhid would
    /// wait 5 s for each).
    Stall,
}

// bmRequestType values (USB 2.0 §9.3.1).
const STD_DEVICE_IN: u8 = 0x80;
const STD_INTERFACE_IN: u8 = 0x81;
const STD_ENDPOINT_IN: u8 = 0x82;
const STD_DEVICE_OUT: u8 = 0x00;
const STD_INTERFACE_OUT: u8 = 0x01;
const STD_ENDPOINT_OUT: u8 = 0x02;
const CLASS_INTERFACE_OUT: u8 = 0x21;
const CLASS_INTERFACE_IN: u8 = 0xa1;

// Standard requests (USB 2.0 §9.4) and HID class requests (HID 1.11 §7.2).
const GET_STATUS: u8 = 0;
const CLEAR_FEATURE: u8 = 1;
const SET_FEATURE: u8 = 3;
const GET_DESCRIPTOR: u8 = 6;
const GET_CONFIGURATION: u8 = 8;
const SET_CONFIGURATION: u8 = 9;
const GET_INTERFACE: u8 = 10;
const SET_INTERFACE: u8 = 11;
const HID_GET_IDLE: u8 = 0x02;
const HID_SET_REPORT: u8 = 0x09;
const HID_SET_IDLE: u8 = 0x0a;

/// Endpoint-0 state of one session.
pub struct Control {
    identity: DeviceIdentity,
    configuration: u8,
    idle_rate: u8,
}

impl Control {
    pub fn new(identity: DeviceIdentity) -> Control {
        Control {
            identity,
            configuration: 0,
            idle_rate: 0,
        }
    }

    /// Handles one control request. `data` is the OUT data stage (empty for IN).
    pub fn handle(&mut self, setup: &super::protocol::Setup, data: &[u8]) -> ControlOutcome {
        use ControlOutcome::*;
        // wValue of GET_DESCRIPTOR: descriptor type in the high byte, index in the low.
        let [desc_index, desc_type] = setup.value.to_le_bytes();
        match (setup.request_type, setup.request) {
            (STD_DEVICE_IN, GET_DESCRIPTOR) => match desc_type {
                DESC_DEVICE => Data(self.identity.device_descriptor().to_vec()),
                DESC_CONFIGURATION if desc_index == 0 => {
                    Data(self.identity.configuration_descriptor())
                }
                DESC_STRING => self
                    .identity
                    .string_descriptor(desc_index)
                    .map_or(Stall, Data),
                // Device qualifier (6), BOS (15), other speed (7): a full-speed USB 2.0
                // device without them stalls, and Linux accepts that.
                _ => Stall,
            },
            (STD_INTERFACE_IN, GET_DESCRIPTOR) if setup.index == 0 => match desc_type {
                DESC_REPORT => Data(REPORT_DESCRIPTOR.to_vec()),
                DESC_HID => Data(self.identity.hid_descriptor()),
                _ => Stall,
            },
            (STD_DEVICE_OUT, SET_CONFIGURATION) => match setup.value {
                0 | 1 => {
                    self.configuration = setup.value as u8;
                    Data(Vec::new())
                }
                _ => Stall,
            },
            (STD_DEVICE_IN, GET_CONFIGURATION) => Data(vec![self.configuration]),
            // Bus powered, no remote wakeup; interface and endpoint status all zero.
            (STD_DEVICE_IN | STD_INTERFACE_IN | STD_ENDPOINT_IN, GET_STATUS) => Data(vec![0, 0]),
            (STD_INTERFACE_OUT, SET_INTERFACE) if setup.index == 0 && setup.value == 0 => {
                Data(Vec::new())
            }
            (STD_INTERFACE_IN, GET_INTERFACE) if setup.index == 0 => Data(vec![0]),
            // ENDPOINT_HALT is the only endpoint feature; our endpoints never halt.
            (STD_ENDPOINT_OUT, CLEAR_FEATURE | SET_FEATURE) if setup.value == 0 => Data(Vec::new()),
            (CLASS_INTERFACE_OUT, HID_SET_IDLE) if setup.index == 0 => {
                self.idle_rate = (setup.value >> 8) as u8;
                Data(Vec::new())
            }
            (CLASS_INTERFACE_IN, HID_GET_IDLE) if setup.index == 0 => Data(vec![self.idle_rate]),
            // An output report sent over the control pipe (hosts without interrupt OUT
            // use this); report type 2 = output, report ID 0.
            (CLASS_INTERFACE_OUT, HID_SET_REPORT) if setup.index == 0 && setup.value == 0x0200 => {
                OutReport(data.to_vec())
            }
            _ => Stall,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::protocol::Setup;
    use super::*;

    fn control() -> Control {
        Control::new(DeviceIdentity {
            vendor_id: 0x1209,
            product_id: 1,
            device_release: 0x100,
            manufacturer: "m".into(),
            product: "p".into(),
            serial: "s".into(),
        })
    }

    fn setup(request_type: u8, request: u8, value: u16, index: u16, length: u16) -> Setup {
        Setup {
            request_type,
            request,
            value,
            index,
            length,
        }
    }

    #[test]
    fn linux_enumeration_sequence() {
        let mut c = control();
        let ControlOutcome::Data(d) = c.handle(&setup(0x80, 6, 0x0100, 0, 64), &[]) else {
            panic!()
        };
        assert_eq!(d.len(), 18);
        let ControlOutcome::Data(d) = c.handle(&setup(0x80, 6, 0x0200, 0, 255), &[]) else {
            panic!()
        };
        assert_eq!(d.len(), 41);
        assert!(matches!(
            c.handle(&setup(0x80, 6, 0x0300, 0, 255), &[]),
            ControlOutcome::Data(_)
        ));
        assert!(matches!(
            c.handle(&setup(0x80, 6, 0x0303, 0x409, 255), &[]),
            ControlOutcome::Data(_)
        ));
        assert_eq!(
            c.handle(&setup(0x00, 9, 1, 0, 0), &[]),
            ControlOutcome::Data(vec![])
        );
        assert_eq!(
            c.handle(&setup(0x80, 8, 0, 0, 1), &[]),
            ControlOutcome::Data(vec![1])
        );
        assert_eq!(
            c.handle(&setup(0x21, 0x0a, 0, 0, 0), &[]),
            ControlOutcome::Data(vec![])
        );
        assert_eq!(
            c.handle(&setup(0x81, 6, 0x2200, 0, 34), &[]),
            ControlOutcome::Data(REPORT_DESCRIPTOR.to_vec())
        );
        assert_eq!(
            c.handle(&setup(0x80, 0, 0, 0, 2), &[]),
            ControlOutcome::Data(vec![0, 0])
        );
    }

    #[test]
    fn unsupported_requests_stall() {
        let mut c = control();
        assert_eq!(
            c.handle(&setup(0x80, 6, 0x0600, 0, 10), &[]),
            ControlOutcome::Stall
        ); // qualifier
        assert_eq!(
            c.handle(&setup(0x80, 6, 0x0309, 0, 10), &[]),
            ControlOutcome::Stall
        ); // no string 9
        assert_eq!(
            c.handle(&setup(0x81, 6, 0x2200, 7, 34), &[]),
            ControlOutcome::Stall
        ); // interface 7
        assert_eq!(
            c.handle(&setup(0x00, 9, 2, 0, 0), &[]),
            ControlOutcome::Stall
        );
        assert_eq!(
            c.handle(&setup(0xc0, 0x33, 0, 0, 4), &[]),
            ControlOutcome::Stall
        ); // vendor
        assert_eq!(
            c.handle(&setup(0x00, 5, 7, 0, 0), &[]),
            ControlOutcome::Stall
        ); // SET_ADDRESS
    }

    #[test]
    fn set_report_carries_an_output_report() {
        let mut c = control();
        assert_eq!(
            c.handle(&setup(0x21, 9, 0x0200, 0, 3), &[1, 2, 3]),
            ControlOutcome::OutReport(vec![1, 2, 3])
        );
    }
}
