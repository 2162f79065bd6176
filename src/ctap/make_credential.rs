//! authenticatorMakeCredential (0x01), CTAP 2.1 §6.1.

use ciborium::Value;
use zeroize::Zeroizing;

use super::auth_data::{self, AttestedCredential, FLAG_UP, FLAG_UV};
use super::cbor::{MapBuilder, RequestMap, read};
use super::credential_id::{self, CredentialSource, Properties};
use super::dispatcher::Response;
use super::events::{CredentialInfo, Event};
use super::extensions::{MakeCredentialExtensions, MakeCredentialOutputs};
use super::params::{
    CredentialDescriptor, Options, RpEntity, UserEntity, client_data_hash,
    first_supported_algorithm,
};
use super::presence::{RequestContext, Touch};
use super::status::{CtapResult, StatusCode};
use super::user_verification::{Operation, UvRequest, Verification};
use super::{AAGUID, AttestationFormat, Authenticator};
use crate::crypto::{self, Algorithm, CredentialKey};
use crate::store::Credential;

pub(super) struct MakeCredentialRequest {
    client_data_hash: [u8; 32],
    rp: RpEntity,
    user: UserEntity,
    /// From pubKeyCredParams (step 3).
    algorithm: Algorithm,
    exclude_list: Vec<CredentialDescriptor>,
    /// Parsed with the request; an error in them is reported at step 13, where the
    /// extensions are processed.
    extensions: CtapResult<MakeCredentialExtensions>,
    options: Options,
    pin_uv_auth_param: Option<Vec<u8>>,
    pin_uv_auth_protocol: Option<u64>,
    enterprise_attestation: Option<u64>,
}

impl MakeCredentialRequest {
    pub fn parse(params: &[u8]) -> CtapResult<Self> {
        let mut m = RequestMap::parse(params)?;
        let client_data_hash = client_data_hash(m.required(0x01)?)?;
        let rp = RpEntity::parse(m.required(0x02)?)?;
        let user = UserEntity::parse(m.required(0x03)?)?;
        let cred_params = read::array(m.required(0x04)?)?;
        let exclude_list = CredentialDescriptor::parse_list(m.take(0x05))?;
        let extensions = m.take(0x06).map(read::map).transpose()?;
        Ok(MakeCredentialRequest {
            client_data_hash,
            rp,
            user,
            exclude_list,
            options: Options::parse(m.take(0x07))?,
            pin_uv_auth_param: m.take(0x08).map(read::bytes).transpose()?,
            pin_uv_auth_protocol: m.take(0x09).map(read::unsigned).transpose()?,
            enterprise_attestation: m.take(0x0a).map(read::unsigned).transpose()?,
            algorithm: first_supported_algorithm(cred_params)?,
            extensions: MakeCredentialExtensions::parse(extensions.unwrap_or_default()),
        })
    }
}

pub(super) struct MakeCredentialResponse {
    fmt: &'static str,
    auth_data: Vec<u8>,
    att_stmt: Value,
    /// largeBlobKey (§12.3), when the extension asked for it.
    large_blob_key: Option<Zeroizing<[u8; 32]>>,
}

impl Response for MakeCredentialResponse {
    fn encode(self) -> Option<Value> {
        MapBuilder::new()
            .int(0x01, self.fmt)
            .int(0x02, Value::Bytes(self.auth_data))
            .int(0x03, self.att_stmt)
            .int_opt(0x05, self.large_blob_key.map(|k| Value::Bytes(k.to_vec())))
            .build()
            .into()
    }
}

pub(super) fn make_credential(
    auth: &mut Authenticator,
    req: MakeCredentialRequest,
    ctx: &RequestContext,
) -> CtapResult<MakeCredentialResponse> {
    // Steps 4–5: options.
    if req.options.up == Some(false) {
        return Err(StatusCode::InvalidOption);
    }
    let rk = req.options.rk.unwrap_or(false);
    let rp = &req.rp;

    // Steps 1–2, 5–11: pinUvAuthParam / built-in UV / alwaysUv / makeCredUvNotRqd.
    let v = auth.verify_user(
        Operation::MakeCredential { rk },
        &UvRequest {
            rp_id: &rp.id,
            client_data_hash: &req.client_data_hash,
            pin_uv_auth_param: req.pin_uv_auth_param.as_deref(),
            pin_uv_auth_protocol: req.pin_uv_auth_protocol,
            uv_option: req.options.uv,
            user_name: req.user.name.as_deref(),
        },
        ctx,
    )?;

    // Step 9: enterprise attestation is not supported (no "ep" in getInfo).
    if req.enterprise_attestation.is_some() {
        return Err(StatusCode::InvalidParameter);
    }
    let rp_id_hash = crypto::sha256(rp.id.as_bytes());
    check_exclude_list(auth, &req, &rp_id_hash, &v, ctx)?;

    // Step 13: extensions. hmac-secret-mc's salts are opened here, before the touch.
    let extensions = req.extensions?;
    extensions.check(rk)?;
    let hmac_secret_mc = extensions
        .hmac_secret_mc
        .as_ref()
        .map(|input| input.open(&auth.state.key_agreement))
        .transpose()?;

    // Step 14: user presence (a token's userPresent or built-in UV may stand in).
    let touch = Touch {
        command: "makeCredential",
        rp_id: Some(&rp.id),
        user_name: req.user.name.as_deref(),
    };
    auth.presence_for(&v, ctx, touch)?;

    // Steps 16–17: create the credential; a discoverable one goes to the store.
    let key = CredentialKey::generate(req.algorithm);
    let props = Properties {
        discoverable: rk,
        cred_protect: extensions.cred_protect.unwrap_or_default(),
        hmac_secret: extensions.hmac_secret == Some(true),
        large_blob_key: extensions.large_blob_key,
        cred_blob: extensions.cred_blob_to_store(),
    };
    let id = credential_id::seal(auth.store.wrapping_key(), &rp_id_hash, &key, &props);
    let (backup_eligible, backup_state) = auth.default_backup();
    if rk {
        auth.store.put_credential(Credential {
            id: id.clone(),
            rp_id: rp.id.clone(),
            rp_name: rp.name.clone(),
            user_id: req.user.id.clone(),
            user_name: req.user.name.clone(),
            user_display_name: req.user.display_name.clone(),
            cred_protect: props.cred_protect.level(),
            discoverable: true,
            private_key: None,
            backup_eligible: Some(backup_eligible),
            backup_state: Some(backup_state),
            hmac_secret: props.hmac_secret,
            large_blob_key: props.large_blob_key,
            cred_blob: props.cred_blob.clone(),
        })?;
    }

    // Step 15: the token's presence and verification are used up.
    if v.token {
        auth.state.token.consume();
    }

    // Step 19: authenticator data and attestation statement; extension outputs only
    // for the inputs that came (hmac-secret-mc under the CredRandom the UV flag picks).
    let credential = CredentialSource::new(&key, props);
    let outputs = MakeCredentialOutputs {
        cred_protect: extensions.cred_protect,
        min_pin_length: auth
            .store
            .min_pin_length_for(&rp.id)
            .filter(|_| extensions.min_pin_length),
        hmac_secret: extensions.hmac_secret,
        hmac_secret_mc: hmac_secret_mc
            .zip(credential.cred_random(v.uv))
            .map(|(salts, cr)| salts.evaluate(&cr)),
        cred_blob: extensions.cred_blob_output(),
    };
    let overrides = auth.config.overrides.get();
    let flags = FLAG_UP
        | if v.uv { FLAG_UV } else { 0 }
        | Authenticator::backup_flags((backup_eligible, backup_state));
    let flags = overrides.flags(flags);
    let auth_data = auth_data::build(
        &rp_id_hash,
        flags,
        0,
        Some(AttestedCredential {
            aaguid: &AAGUID,
            credential_id: &id,
            public_key: key.cose_public_key(),
        }),
        outputs.encode(),
    );
    let (fmt, att_stmt) = attest(auth, &key, &auth_data, &req.client_data_hash)?;
    auth.config
        .events
        .emit(Event::CredentialAdded(CredentialInfo {
            credential_id: id,
            is_resident: rk,
            rp_id: rp.id.clone(),
            user_handle: Some(req.user.id),
            user_name: req.user.name,
            user_display_name: req.user.display_name,
            sign_count: 0,
            backup_eligibility: backup_eligible,
            backup_state,
        }));
    Ok(MakeCredentialResponse {
        fmt,
        auth_data,
        att_stmt,
        large_blob_key: credential.large_blob_key(),
    })
}

/// Step 12: a credential of ours for this RP in excludeList → a touch, then
/// CREDENTIAL_EXCLUDED. One with credProtect userVerificationRequired counts only if
/// the user was verified.
fn check_exclude_list(
    auth: &Authenticator,
    req: &MakeCredentialRequest,
    rp_id_hash: &[u8; 32],
    v: &Verification,
    ctx: &RequestContext,
) -> CtapResult<()> {
    let excluded = req.exclude_list.iter().any(|d| {
        d.public_key
            && auth
                .find_credential(rp_id_hash, &d.id)
                .is_some_and(|c| c.props.cred_protect.allows(v.uv, true))
    });
    if excluded {
        let touch = Touch {
            command: "makeCredential",
            rp_id: Some(&req.rp.id),
            user_name: req.user.name.as_deref(),
        };
        auth.presence_for(v, ctx, touch)?;
        return Err(StatusCode::CredentialExcluded);
    }
    Ok(())
}

/// The attestation statement over authenticatorData ‖ clientDataHash (WebAuthn §8.2).
fn attest(
    auth: &Authenticator,
    key: &CredentialKey,
    auth_data: &[u8],
    client_data_hash: &[u8],
) -> CtapResult<(&'static str, Value)> {
    let mut signed = auth_data.to_vec();
    signed.extend_from_slice(client_data_hash);
    let overrides = auth.config.overrides.get();
    Ok(match auth.config.attestation {
        AttestationFormat::Packed => {
            let a = auth.attestation.as_ref().ok_or(StatusCode::Other)?;
            let x5c = Value::Array(vec![Value::Bytes(a.batch_cert_der.clone())]);
            let stmt = MapBuilder::new()
                .text("alg", -7)
                .text("sig", Value::Bytes(overrides.signature(a.sign(&signed))))
                .text("x5c", x5c)
                .build();
            ("packed", stmt)
        }
        // Self attestation: signed by the credential key, no x5c.
        AttestationFormat::SelfAttestation => {
            let stmt = MapBuilder::new()
                .text("alg", key.algorithm().cose_id())
                .text("sig", Value::Bytes(overrides.signature(key.sign(&signed))))
                .build();
            ("packed", stmt)
        }
        AttestationFormat::None => ("none", Value::Map(Vec::new())),
    })
}
