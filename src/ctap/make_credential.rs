//! authenticatorMakeCredential (0x01), CTAP 2.1 §6.1.

use ciborium::Value;

use super::auth_data::{self, AttestedCredential, FLAG_UP};
use super::cbor::{MapBuilder, RequestMap, read};
use super::credential_id::{self, CredentialSource};
use super::params::{CredentialDescriptor, Options, RpEntity, UserEntity, parse_cred_param};
use super::presence::RequestContext;
use super::status::{CtapResult, StatusCode};
use super::{AAGUID, AttestationFormat, Authenticator};
use crate::crypto::{self, Algorithm, CredentialKey};
use crate::store::{StoreError, StoredCredential};

pub(super) fn make_credential(
    auth: &mut Authenticator,
    params: &[u8],
    ctx: &RequestContext,
) -> CtapResult<Value> {
    if params.is_empty() {
        return Err(StatusCode::MissingParameter);
    }
    let mut m = RequestMap::parse(params)?;
    let client_data_hash = read::bytes(read::required(m.take(0x01))?)?;
    let rp = RpEntity::parse(read::required(m.take(0x02))?)?;
    let user = UserEntity::parse(read::required(m.take(0x03))?)?;
    let cred_params = read::array(read::required(m.take(0x04))?)?;
    let exclude_list = m
        .take(0x05)
        .map(CredentialDescriptor::parse_list)
        .transpose()?;
    let _extensions = m.take(0x06).map(read::map).transpose()?;
    let options = Options::parse(m.take(0x07))?;
    let pin_uv_auth_param = m.take(0x08).map(read::bytes).transpose()?;
    let pin_uv_auth_protocol = m.take(0x09).map(read::unsigned).transpose()?;
    let enterprise_attestation = m.take(0x0a).map(read::unsigned).transpose()?;

    // Steps 1–2: pinUvAuthParam. This key has no clientPIN yet, so the zero-length probe
    // (Windows, §6.1.2 step 1) gets PIN_NOT_SET after a touch, and a real one names a
    // protocol we do not support.
    auth.check_pin_uv_auth_param(
        pin_uv_auth_param.as_deref(),
        pin_uv_auth_protocol,
        ctx,
        &rp.id,
    )?;

    // Step 3: every entry is validated; the first supported algorithm in the RP's order wins.
    let mut alg = None;
    for p in cred_params {
        let (public_key, id) = parse_cred_param(p)?;
        if public_key && alg.is_none() {
            alg = Algorithm::from_cose_id(id);
        }
    }
    let alg = alg.ok_or(StatusCode::UnsupportedAlgorithm)?;

    // Steps 4–5: options.
    if options.up == Some(false) {
        return Err(StatusCode::InvalidOption);
    }
    if options.uv == Some(true) {
        // No built-in user verification method.
        return Err(StatusCode::InvalidOption);
    }
    let rk = options.rk.unwrap_or(false);

    // Step 9: enterprise attestation is not supported (no "ep" in getInfo).
    if enterprise_attestation.is_some() {
        return Err(StatusCode::InvalidParameter);
    }

    let rp_id_hash = crypto::sha256(rp.id.as_bytes());

    // Step 11: a credential of ours for this RP in excludeList → touch, then EXCLUDED.
    if let Some(list) = &exclude_list {
        for d in list.iter().filter(|d| d.public_key) {
            if auth.find_credential(&rp_id_hash, &d.id).is_some() {
                auth.user_presence(
                    ctx,
                    &format!("makeCredential for {} (already registered)", rp.id),
                )?;
                return Err(StatusCode::CredentialExcluded);
            }
        }
    }

    // Step 14: user presence.
    auth.user_presence(ctx, &format!("register with {}", rp.id))?;

    // Steps 16–17: create the credential; a discoverable one goes to the store.
    let key = CredentialKey::generate(alg);
    let source = CredentialSource {
        key,
        discoverable: rk,
        cred_protect: 1,
    };
    let id = credential_id::seal(auth.store.wrapping_key(), &rp_id_hash, &source);
    if rk {
        let stored = StoredCredential {
            id: id.clone(),
            rp_id: rp.id.clone(),
            rp_name: rp.name.clone(),
            user_id: user.id.clone(),
            user_name: user.name.clone(),
            user_display_name: user.display_name.clone(),
            created: 0,
        };
        auth.store.put_credential(stored).map_err(|e| match e {
            StoreError::Full => StatusCode::KeyStoreFull,
            e => {
                tracing::error!("cannot store credential: {e}");
                StatusCode::Other
            }
        })?;
    }

    // Step 19: authenticator data and attestation statement.
    let flags = FLAG_UP | auth.backup_flags();
    let auth_data = auth_data::build(
        &rp_id_hash,
        flags,
        0,
        Some(AttestedCredential {
            aaguid: &AAGUID,
            credential_id: &id,
            public_key: source.key.cose_public_key(),
        }),
        None,
    );
    let mut signed = auth_data.clone();
    signed.extend_from_slice(&client_data_hash);
    let (fmt, att_stmt) = match auth.config.attestation {
        AttestationFormat::Packed => match &auth.attestation {
            Some(a) => (
                "packed",
                MapBuilder::new()
                    .text("alg", Value::Integer((-7).into()))
                    .text("sig", Value::Bytes(a.sign(&signed)))
                    .text(
                        "x5c",
                        Value::Array(vec![Value::Bytes(a.batch_cert_der.clone())]),
                    )
                    .build(),
            ),
            None => return Err(StatusCode::Other),
        },
        // Self attestation (WebAuthn §8.2): signed by the credential key, no x5c.
        AttestationFormat::SelfAttestation => (
            "packed",
            MapBuilder::new()
                .text("alg", Value::Integer(alg.cose_id().into()))
                .text("sig", Value::Bytes(source.key.sign(&signed)))
                .build(),
        ),
        AttestationFormat::None => ("none", Value::Map(Vec::new())),
    };
    Ok(MapBuilder::new()
        .int(0x01, fmt)
        .int(0x02, Value::Bytes(auth_data))
        .int(0x03, att_stmt)
        .build())
}
