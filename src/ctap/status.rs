//! CTAP status codes (CTAP 2.1 §8.2). Relying parties and browsers branch on the exact
//! byte, so each error path names its variant explicitly.

use crate::store::{EngineError, StoreError};

/// A CTAP error status. `CTAP2_OK` is not an error and so is not a variant: a handler
/// returns `Ok(response)` for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[repr(u8)]
pub enum StatusCode {
    #[error("CTAP1_ERR_INVALID_COMMAND")]
    InvalidCommand = 0x01,
    #[error("CTAP1_ERR_INVALID_PARAMETER")]
    InvalidParameter = 0x02,
    #[error("CTAP1_ERR_INVALID_LENGTH")]
    InvalidLength = 0x03,
    #[error("CTAP1_ERR_INVALID_SEQ")]
    InvalidSeq = 0x04,
    #[error("CTAP1_ERR_TIMEOUT")]
    Timeout = 0x05,
    #[error("CTAP1_ERR_CHANNEL_BUSY")]
    ChannelBusy = 0x06,
    #[error("CTAP1_ERR_LOCK_REQUIRED")]
    LockRequired = 0x0a,
    #[error("CTAP1_ERR_INVALID_CHANNEL")]
    InvalidChannel = 0x0b,
    #[error("CTAP2_ERR_CBOR_UNEXPECTED_TYPE")]
    CborUnexpectedType = 0x11,
    #[error("CTAP2_ERR_INVALID_CBOR")]
    InvalidCbor = 0x12,
    #[error("CTAP2_ERR_MISSING_PARAMETER")]
    MissingParameter = 0x14,
    #[error("CTAP2_ERR_LIMIT_EXCEEDED")]
    LimitExceeded = 0x15,
    #[error("CTAP2_ERR_FP_DATABASE_FULL")]
    FpDatabaseFull = 0x17,
    #[error("CTAP2_ERR_LARGE_BLOB_STORAGE_FULL")]
    LargeBlobStorageFull = 0x18,
    #[error("CTAP2_ERR_CREDENTIAL_EXCLUDED")]
    CredentialExcluded = 0x19,
    #[error("CTAP2_ERR_PROCESSING")]
    Processing = 0x21,
    #[error("CTAP2_ERR_INVALID_CREDENTIAL")]
    InvalidCredential = 0x22,
    #[error("CTAP2_ERR_USER_ACTION_PENDING")]
    UserActionPending = 0x23,
    #[error("CTAP2_ERR_OPERATION_PENDING")]
    OperationPending = 0x24,
    #[error("CTAP2_ERR_NO_OPERATIONS")]
    NoOperations = 0x25,
    #[error("CTAP2_ERR_UNSUPPORTED_ALGORITHM")]
    UnsupportedAlgorithm = 0x26,
    #[error("CTAP2_ERR_OPERATION_DENIED")]
    OperationDenied = 0x27,
    #[error("CTAP2_ERR_KEY_STORE_FULL")]
    KeyStoreFull = 0x28,
    #[error("CTAP2_ERR_UNSUPPORTED_OPTION")]
    UnsupportedOption = 0x2b,
    #[error("CTAP2_ERR_INVALID_OPTION")]
    InvalidOption = 0x2c,
    #[error("CTAP2_ERR_KEEPALIVE_CANCEL")]
    KeepaliveCancel = 0x2d,
    #[error("CTAP2_ERR_NO_CREDENTIALS")]
    NoCredentials = 0x2e,
    #[error("CTAP2_ERR_USER_ACTION_TIMEOUT")]
    UserActionTimeout = 0x2f,
    #[error("CTAP2_ERR_NOT_ALLOWED")]
    NotAllowed = 0x30,
    #[error("CTAP2_ERR_PIN_INVALID")]
    PinInvalid = 0x31,
    #[error("CTAP2_ERR_PIN_BLOCKED")]
    PinBlocked = 0x32,
    #[error("CTAP2_ERR_PIN_AUTH_INVALID")]
    PinAuthInvalid = 0x33,
    #[error("CTAP2_ERR_PIN_AUTH_BLOCKED")]
    PinAuthBlocked = 0x34,
    #[error("CTAP2_ERR_PIN_NOT_SET")]
    PinNotSet = 0x35,
    #[error("CTAP2_ERR_PUAT_REQUIRED")]
    PuatRequired = 0x36,
    #[error("CTAP2_ERR_PIN_POLICY_VIOLATION")]
    PinPolicyViolation = 0x37,
    #[error("CTAP2_ERR_REQUEST_TOO_LARGE")]
    RequestTooLarge = 0x39,
    #[error("CTAP2_ERR_ACTION_TIMEOUT")]
    ActionTimeout = 0x3a,
    #[error("CTAP2_ERR_UP_REQUIRED")]
    UpRequired = 0x3b,
    #[error("CTAP2_ERR_UV_BLOCKED")]
    UvBlocked = 0x3c,
    #[error("CTAP2_ERR_INTEGRITY_FAILURE")]
    IntegrityFailure = 0x3d,
    #[error("CTAP2_ERR_INVALID_SUBCOMMAND")]
    InvalidSubcommand = 0x3e,
    #[error("CTAP2_ERR_UV_INVALID")]
    UvInvalid = 0x3f,
    #[error("CTAP2_ERR_UNAUTHORIZED_PERMISSION")]
    UnauthorizedPermission = 0x40,
    #[error("CTAP1_ERR_OTHER")]
    Other = 0x7f,
}

impl StatusCode {
    /// Every status, for decoding a byte (traces).
    const ALL: [StatusCode; 45] = [
        StatusCode::InvalidCommand,
        StatusCode::InvalidParameter,
        StatusCode::InvalidLength,
        StatusCode::InvalidSeq,
        StatusCode::Timeout,
        StatusCode::ChannelBusy,
        StatusCode::LockRequired,
        StatusCode::InvalidChannel,
        StatusCode::CborUnexpectedType,
        StatusCode::InvalidCbor,
        StatusCode::MissingParameter,
        StatusCode::LimitExceeded,
        StatusCode::FpDatabaseFull,
        StatusCode::LargeBlobStorageFull,
        StatusCode::CredentialExcluded,
        StatusCode::Processing,
        StatusCode::InvalidCredential,
        StatusCode::UserActionPending,
        StatusCode::OperationPending,
        StatusCode::NoOperations,
        StatusCode::UnsupportedAlgorithm,
        StatusCode::OperationDenied,
        StatusCode::KeyStoreFull,
        StatusCode::UnsupportedOption,
        StatusCode::InvalidOption,
        StatusCode::KeepaliveCancel,
        StatusCode::NoCredentials,
        StatusCode::UserActionTimeout,
        StatusCode::NotAllowed,
        StatusCode::PinInvalid,
        StatusCode::PinBlocked,
        StatusCode::PinAuthInvalid,
        StatusCode::PinAuthBlocked,
        StatusCode::PinNotSet,
        StatusCode::PuatRequired,
        StatusCode::PinPolicyViolation,
        StatusCode::RequestTooLarge,
        StatusCode::ActionTimeout,
        StatusCode::UpRequired,
        StatusCode::UvBlocked,
        StatusCode::IntegrityFailure,
        StatusCode::InvalidSubcommand,
        StatusCode::UvInvalid,
        StatusCode::UnauthorizedPermission,
        StatusCode::Other,
    ];

    /// The status a byte stands for, if any.
    pub fn from_byte(b: u8) -> Option<StatusCode> {
        Self::ALL.iter().copied().find(|s| s.byte() == b)
    }

    pub fn byte(self) -> u8 {
        self as u8
    }
}

/// The result of a CTAP command handler.
pub type CtapResult<T> = Result<T, StatusCode>;

/// The one mapping of store failures to a status: a full store is KEY_STORE_FULL;
/// anything else (an I/O error) is logged and answered CTAP1_ERR_OTHER, with nothing
/// acknowledged.
impl From<StoreError> for StatusCode {
    fn from(e: StoreError) -> StatusCode {
        match e {
            StoreError::Full(_) | StoreError::Engine(EngineError::Full(_)) => {
                StatusCode::KeyStoreFull
            }
            StoreError::RpIdTooLong => StatusCode::InvalidLength,
            e => {
                tracing::error!("store: {e}");
                StatusCode::Other
            }
        }
    }
}
