//! ISO 3166 alpha-2 codes and the country names PostHog's GeoIP (MaxMind's English names)
//! writes, for `$geoip_country_name` (from the public-domain ISO 3166 table of the tz
//! database, names adjusted to MaxMind's).

/// `CCName` lines.
const TABLE: &str = "\
ADAndorra\n\
AEUnited Arab Emirates\n\
AFAfghanistan\n\
AGAntigua and Barbuda\n\
AIAnguilla\n\
ALAlbania\n\
AMArmenia\n\
AOAngola\n\
AQAntarctica\n\
ARArgentina\n\
ASSamoa (American)\n\
ATAustria\n\
AUAustralia\n\
AWAruba\n\
AXÅland Islands\n\
AZAzerbaijan\n\
BABosnia and Herzegovina\n\
BBBarbados\n\
BDBangladesh\n\
BEBelgium\n\
BFBurkina Faso\n\
BGBulgaria\n\
BHBahrain\n\
BIBurundi\n\
BJBenin\n\
BLSaint Barthélemy\n\
BMBermuda\n\
BNBrunei\n\
BOBolivia\n\
BQBonaire, Sint Eustatius, and Saba\n\
BRBrazil\n\
BSBahamas\n\
BTBhutan\n\
BVBouvet Island\n\
BWBotswana\n\
BYBelarus\n\
BZBelize\n\
CACanada\n\
CCCocos (Keeling) Islands\n\
CDDR Congo\n\
CFCentral African Rep.\n\
CGCongo Republic\n\
CHSwitzerland\n\
CIIvory Coast\n\
CKCook Islands\n\
CLChile\n\
CMCameroon\n\
CNChina\n\
COColombia\n\
CRCosta Rica\n\
CUCuba\n\
CVCabo Verde\n\
CWCuraçao\n\
CXChristmas Island\n\
CYCyprus\n\
CZCzechia\n\
DEGermany\n\
DJDjibouti\n\
DKDenmark\n\
DMDominica\n\
DODominican Republic\n\
DZAlgeria\n\
ECEcuador\n\
EEEstonia\n\
EGEgypt\n\
EHWestern Sahara\n\
EREritrea\n\
ESSpain\n\
ETEthiopia\n\
FIFinland\n\
FJFiji\n\
FKFalkland Islands\n\
FMFederated States of Micronesia\n\
FOFaroe Islands\n\
FRFrance\n\
GAGabon\n\
GBUnited Kingdom\n\
GDGrenada\n\
GEGeorgia\n\
GFFrench Guiana\n\
GGGuernsey\n\
GHGhana\n\
GIGibraltar\n\
GLGreenland\n\
GMGambia\n\
GNGuinea\n\
GPGuadeloupe\n\
GQEquatorial Guinea\n\
GRGreece\n\
GSSouth Georgia and the South Sandwich Islands\n\
GTGuatemala\n\
GUGuam\n\
GWGuinea-Bissau\n\
GYGuyana\n\
HKHong Kong\n\
HMHeard Island and McDonald Islands\n\
HNHonduras\n\
HRCroatia\n\
HTHaiti\n\
HUHungary\n\
IDIndonesia\n\
IEIreland\n\
ILIsrael\n\
IMIsle of Man\n\
INIndia\n\
IOBritish Indian Ocean Territory\n\
IQIraq\n\
IRIran\n\
ISIceland\n\
ITItaly\n\
JEJersey\n\
JMJamaica\n\
JOJordan\n\
JPJapan\n\
KEKenya\n\
KGKyrgyzstan\n\
KHCambodia\n\
KIKiribati\n\
KMComoros\n\
KNSt. Kitts and Nevis\n\
KPNorth Korea\n\
KRSouth Korea\n\
KWKuwait\n\
KYCayman Islands\n\
KZKazakhstan\n\
LALaos\n\
LBLebanon\n\
LCSt. Lucia\n\
LILiechtenstein\n\
LKSri Lanka\n\
LRLiberia\n\
LSLesotho\n\
LTLithuania\n\
LULuxembourg\n\
LVLatvia\n\
LYLibya\n\
MAMorocco\n\
MCMonaco\n\
MDMoldova\n\
MEMontenegro\n\
MFSaint Martin\n\
MGMadagascar\n\
MHMarshall Islands\n\
MKNorth Macedonia\n\
MLMali\n\
MMMyanmar\n\
MNMongolia\n\
MOMacau\n\
MPNorthern Mariana Islands\n\
MQMartinique\n\
MRMauritania\n\
MSMontserrat\n\
MTMalta\n\
MUMauritius\n\
MVMaldives\n\
MWMalawi\n\
MXMexico\n\
MYMalaysia\n\
MZMozambique\n\
NANamibia\n\
NCNew Caledonia\n\
NENiger\n\
NFNorfolk Island\n\
NGNigeria\n\
NINicaragua\n\
NLNetherlands\n\
NONorway\n\
NPNepal\n\
NRNauru\n\
NUNiue\n\
NZNew Zealand\n\
OMOman\n\
PAPanama\n\
PEPeru\n\
PFFrench Polynesia\n\
PGPapua New Guinea\n\
PHPhilippines\n\
PKPakistan\n\
PLPoland\n\
PMSt. Pierre and Miquelon\n\
PNPitcairn Islands\n\
PRPuerto Rico\n\
PSPalestine\n\
PTPortugal\n\
PWPalau\n\
PYParaguay\n\
QAQatar\n\
RERéunion\n\
RORomania\n\
RSSerbia\n\
RURussia\n\
RWRwanda\n\
SASaudi Arabia\n\
SBSolomon Islands\n\
SCSeychelles\n\
SDSudan\n\
SESweden\n\
SGSingapore\n\
SHSt. Helena\n\
SISlovenia\n\
SJSvalbard and Jan Mayen\n\
SKSlovakia\n\
SLSierra Leone\n\
SMSan Marino\n\
SNSenegal\n\
SOSomalia\n\
SRSuriname\n\
SSSouth Sudan\n\
STSao Tome and Principe\n\
SVEl Salvador\n\
SXSint Maarten\n\
SYSyria\n\
SZEswatini\n\
TCTurks and Caicos Is\n\
TDChad\n\
TFFrench S. Terr.\n\
TGTogo\n\
THThailand\n\
TJTajikistan\n\
TKTokelau\n\
TLTimor-Leste\n\
TMTurkmenistan\n\
TNTunisia\n\
TOTonga\n\
TRTurkey\n\
TTTrinidad and Tobago\n\
TVTuvalu\n\
TWTaiwan\n\
TZTanzania\n\
UAUkraine\n\
UGUganda\n\
UMU.S. Minor Outlying Islands\n\
USUnited States\n\
UYUruguay\n\
UZUzbekistan\n\
VAVatican City\n\
VCSt. Vincent\n\
VEVenezuela\n\
VGBritish Virgin Islands\n\
VIU.S. Virgin Islands\n\
VNVietnam\n\
VUVanuatu\n\
WFWallis and Futuna\n\
WSSamoa (western)\n\
YEYemen\n\
YTMayotte\n\
ZASouth Africa\n\
ZMZambia\n\
ZWZimbabwe\n\
";

/// The country named by an alpha-2 code (any case), if it is one.
pub fn name(code: &str) -> Option<&'static str> {
    let code = code.trim().to_ascii_uppercase();
    if code.len() != 2 {
        return None;
    }
    TABLE.lines().find(|l| l.starts_with(&code)).map(|l| &l[2..])
}

#[cfg(test)]
mod tests {
    #[test]
    fn codes_name_countries_as_geoip_does() {
        assert_eq!(super::name("us"), Some("United States"));
        assert_eq!(super::name("GB"), Some("United Kingdom"));
        assert_eq!(super::name("PT"), Some("Portugal"));
        assert_eq!(super::name("ZZ"), None);
        assert_eq!(super::name("USA"), None);
    }
}
