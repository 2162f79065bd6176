//! USB/IP (Linux `Documentation/usb/usbip_protocol.rst`): the top of the stack. A TCP
//! server that exports USB HID devices, so that `usbip attach` on a Linux host (or
//! usbip-win on Windows) sees a USB security key.
//!
//! The rules that keep vhci-hcd, usbhid and hidraw happy are in `shared/notes/usbip-hid.md`
//! and cited where they apply.

pub mod client;
pub mod descriptors;
pub mod device;
pub mod peer;
pub mod protocol;
pub mod server;

pub use descriptors::DeviceIdentity;
pub use device::{ExportedDevice, HidFunction, HidReport};
pub use peer::PeerPolicy;
pub use server::Server;
