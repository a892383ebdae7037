//! E.164 country codes and ISO 3166-1 alpha-2 codes: the `country` label of the dialled-number
//! metrics, `countries = ["GB"]` in destination rules (expanded to E.164 prefixes), and the
//! unknown-country errors of `sipguard check`.
//!
//! [`COUNTRIES`] holds every ITU-T E.164 country code (1 to 3 digits) and, for codes shared by
//! several countries, longer prefixes: NANP ("1" is US, every Canadian area code is a CA row, the
//! Caribbean and Pacific members have theirs), "7" RU with "76"/"77" KZ, and a few more
//! ([`country_of`] takes the longest match). Crown dependencies stay GB; Cocos, Christmas Island
//! (AU), Saint-Barthélemy, Saint-Martin (GP) and Western Sahara (MA) are not split off either:
//! their numbers share ranges with the main country's. NANP-wide numbers (toll-free 8xx, the 5xx
//! personal numbers) are US. The ITU's global services (800, 808, 870, 878, 881, 882, 883, 888,
//! 979) are [`NON_GEOGRAPHIC`]. Canada's area codes are libphonenumber's (9.0.43).
//!
//! The kernel counts per country in [`MAX_COUNTRY_SLOTS`] slots. A slot is a country, not a row
//! (CA has 59 rows and one slot): slot 0 is [`UNKNOWN`], then each ISO code in the order its
//! first row appears in [`COUNTRIES`]. Hence the table is append-only: a row inserted or edited
//! in place would move the slots of the countries after it.

/// One prefix of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Country {
    /// E.164 digits: a country code, or a longer prefix inside one.
    pub prefix: &'static str,
    /// ISO 3166-1 alpha-2 (XK for Kosovo, and [`NON_GEOGRAPHIC`], are user-assigned codes).
    pub iso: &'static str,
    pub name: &'static str,
}

/// The label of a number no row matches (and of slot 0).
pub const UNKNOWN: &str = "ZZ";

/// The ITU's global services (country codes 800, 808, 870, 878, 881, 882, 883, 888, 979).
pub const NON_GEOGRAPHIC: &str = "XX";

/// Counter slots of the kernel, one per country, slot 0 for unknown.
pub const MAX_COUNTRY_SLOTS: usize = 256;

/// APPEND-ONLY: the kernel counts by slot, and slots follow the order of the first row of each
/// country (see the module doc). Add rows at the end; never reorder, edit or remove one (a
/// withdrawn code can keep its row). `the_table_is_append_only` pins the rows of each release.
#[rustfmt::skip]
pub const COUNTRIES: &[Country] = &[
    Country { prefix: "1", iso: "US", name: "United States" },
    Country { prefix: "1204", iso: "CA", name: "Canada" },
    Country { prefix: "1226", iso: "CA", name: "Canada" },
    Country { prefix: "1236", iso: "CA", name: "Canada" },
    Country { prefix: "1242", iso: "BS", name: "Bahamas" },
    Country { prefix: "1246", iso: "BB", name: "Barbados" },
    Country { prefix: "1249", iso: "CA", name: "Canada" },
    Country { prefix: "1250", iso: "CA", name: "Canada" },
    Country { prefix: "1257", iso: "CA", name: "Canada" },
    Country { prefix: "1263", iso: "CA", name: "Canada" },
    Country { prefix: "1264", iso: "AI", name: "Anguilla" },
    Country { prefix: "1268", iso: "AG", name: "Antigua and Barbuda" },
    Country { prefix: "1273", iso: "CA", name: "Canada" },
    Country { prefix: "1284", iso: "VG", name: "British Virgin Islands" },
    Country { prefix: "1289", iso: "CA", name: "Canada" },
    Country { prefix: "1306", iso: "CA", name: "Canada" },
    Country { prefix: "1340", iso: "VI", name: "U.S. Virgin Islands" },
    Country { prefix: "1343", iso: "CA", name: "Canada" },
    Country { prefix: "1345", iso: "KY", name: "Cayman Islands" },
    Country { prefix: "1354", iso: "CA", name: "Canada" },
    Country { prefix: "1365", iso: "CA", name: "Canada" },
    Country { prefix: "1367", iso: "CA", name: "Canada" },
    Country { prefix: "1368", iso: "CA", name: "Canada" },
    Country { prefix: "1382", iso: "CA", name: "Canada" },
    Country { prefix: "1403", iso: "CA", name: "Canada" },
    Country { prefix: "1416", iso: "CA", name: "Canada" },
    Country { prefix: "1418", iso: "CA", name: "Canada" },
    Country { prefix: "1428", iso: "CA", name: "Canada" },
    Country { prefix: "1431", iso: "CA", name: "Canada" },
    Country { prefix: "1437", iso: "CA", name: "Canada" },
    Country { prefix: "1438", iso: "CA", name: "Canada" },
    Country { prefix: "1441", iso: "BM", name: "Bermuda" },
    Country { prefix: "1450", iso: "CA", name: "Canada" },
    Country { prefix: "1468", iso: "CA", name: "Canada" },
    Country { prefix: "1473", iso: "GD", name: "Grenada" },
    Country { prefix: "1474", iso: "CA", name: "Canada" },
    Country { prefix: "1506", iso: "CA", name: "Canada" },
    Country { prefix: "1514", iso: "CA", name: "Canada" },
    Country { prefix: "1519", iso: "CA", name: "Canada" },
    Country { prefix: "1548", iso: "CA", name: "Canada" },
    Country { prefix: "1579", iso: "CA", name: "Canada" },
    Country { prefix: "1581", iso: "CA", name: "Canada" },
    Country { prefix: "1584", iso: "CA", name: "Canada" },
    Country { prefix: "1587", iso: "CA", name: "Canada" },
    Country { prefix: "1600", iso: "CA", name: "Canada" },
    Country { prefix: "1604", iso: "CA", name: "Canada" },
    Country { prefix: "1613", iso: "CA", name: "Canada" },
    Country { prefix: "1622", iso: "CA", name: "Canada" },
    Country { prefix: "1633", iso: "CA", name: "Canada" },
    Country { prefix: "1639", iso: "CA", name: "Canada" },
    Country { prefix: "1647", iso: "CA", name: "Canada" },
    Country { prefix: "1649", iso: "TC", name: "Turks and Caicos Islands" },
    Country { prefix: "1658", iso: "JM", name: "Jamaica" },
    Country { prefix: "1664", iso: "MS", name: "Montserrat" },
    Country { prefix: "1670", iso: "MP", name: "Northern Mariana Islands" },
    Country { prefix: "1671", iso: "GU", name: "Guam" },
    Country { prefix: "1672", iso: "CA", name: "Canada" },
    Country { prefix: "1683", iso: "CA", name: "Canada" },
    Country { prefix: "1684", iso: "AS", name: "American Samoa" },
    Country { prefix: "1705", iso: "CA", name: "Canada" },
    Country { prefix: "1709", iso: "CA", name: "Canada" },
    Country { prefix: "1721", iso: "SX", name: "Sint Maarten" },
    Country { prefix: "1742", iso: "CA", name: "Canada" },
    Country { prefix: "1753", iso: "CA", name: "Canada" },
    Country { prefix: "1758", iso: "LC", name: "Saint Lucia" },
    Country { prefix: "1767", iso: "DM", name: "Dominica" },
    Country { prefix: "1778", iso: "CA", name: "Canada" },
    Country { prefix: "1780", iso: "CA", name: "Canada" },
    Country { prefix: "1782", iso: "CA", name: "Canada" },
    Country { prefix: "1784", iso: "VC", name: "Saint Vincent and the Grenadines" },
    Country { prefix: "1787", iso: "PR", name: "Puerto Rico" },
    Country { prefix: "1807", iso: "CA", name: "Canada" },
    Country { prefix: "1809", iso: "DO", name: "Dominican Republic" },
    Country { prefix: "1819", iso: "CA", name: "Canada" },
    Country { prefix: "1825", iso: "CA", name: "Canada" },
    Country { prefix: "1829", iso: "DO", name: "Dominican Republic" },
    Country { prefix: "1849", iso: "DO", name: "Dominican Republic" },
    Country { prefix: "1867", iso: "CA", name: "Canada" },
    Country { prefix: "1868", iso: "TT", name: "Trinidad and Tobago" },
    Country { prefix: "1869", iso: "KN", name: "Saint Kitts and Nevis" },
    Country { prefix: "1873", iso: "CA", name: "Canada" },
    Country { prefix: "1876", iso: "JM", name: "Jamaica" },
    Country { prefix: "1879", iso: "CA", name: "Canada" },
    Country { prefix: "1902", iso: "CA", name: "Canada" },
    Country { prefix: "1905", iso: "CA", name: "Canada" },
    Country { prefix: "1939", iso: "PR", name: "Puerto Rico" },
    Country { prefix: "1942", iso: "CA", name: "Canada" },
    Country { prefix: "20", iso: "EG", name: "Egypt" },
    Country { prefix: "211", iso: "SS", name: "South Sudan" },
    Country { prefix: "212", iso: "MA", name: "Morocco" },
    Country { prefix: "213", iso: "DZ", name: "Algeria" },
    Country { prefix: "216", iso: "TN", name: "Tunisia" },
    Country { prefix: "218", iso: "LY", name: "Libya" },
    Country { prefix: "220", iso: "GM", name: "Gambia" },
    Country { prefix: "221", iso: "SN", name: "Senegal" },
    Country { prefix: "222", iso: "MR", name: "Mauritania" },
    Country { prefix: "223", iso: "ML", name: "Mali" },
    Country { prefix: "224", iso: "GN", name: "Guinea" },
    Country { prefix: "225", iso: "CI", name: "Côte d'Ivoire" },
    Country { prefix: "226", iso: "BF", name: "Burkina Faso" },
    Country { prefix: "227", iso: "NE", name: "Niger" },
    Country { prefix: "228", iso: "TG", name: "Togo" },
    Country { prefix: "229", iso: "BJ", name: "Benin" },
    Country { prefix: "230", iso: "MU", name: "Mauritius" },
    Country { prefix: "231", iso: "LR", name: "Liberia" },
    Country { prefix: "232", iso: "SL", name: "Sierra Leone" },
    Country { prefix: "233", iso: "GH", name: "Ghana" },
    Country { prefix: "234", iso: "NG", name: "Nigeria" },
    Country { prefix: "235", iso: "TD", name: "Chad" },
    Country { prefix: "236", iso: "CF", name: "Central African Republic" },
    Country { prefix: "237", iso: "CM", name: "Cameroon" },
    Country { prefix: "238", iso: "CV", name: "Cape Verde" },
    Country { prefix: "239", iso: "ST", name: "São Tomé and Príncipe" },
    Country { prefix: "240", iso: "GQ", name: "Equatorial Guinea" },
    Country { prefix: "241", iso: "GA", name: "Gabon" },
    Country { prefix: "242", iso: "CG", name: "Congo" },
    Country { prefix: "243", iso: "CD", name: "DR Congo" },
    Country { prefix: "244", iso: "AO", name: "Angola" },
    Country { prefix: "245", iso: "GW", name: "Guinea-Bissau" },
    Country { prefix: "246", iso: "IO", name: "British Indian Ocean Territory" },
    Country { prefix: "247", iso: "SH", name: "Ascension Island" },
    Country { prefix: "248", iso: "SC", name: "Seychelles" },
    Country { prefix: "249", iso: "SD", name: "Sudan" },
    Country { prefix: "250", iso: "RW", name: "Rwanda" },
    Country { prefix: "251", iso: "ET", name: "Ethiopia" },
    Country { prefix: "252", iso: "SO", name: "Somalia" },
    Country { prefix: "253", iso: "DJ", name: "Djibouti" },
    Country { prefix: "254", iso: "KE", name: "Kenya" },
    Country { prefix: "255", iso: "TZ", name: "Tanzania" },
    Country { prefix: "256", iso: "UG", name: "Uganda" },
    Country { prefix: "257", iso: "BI", name: "Burundi" },
    Country { prefix: "258", iso: "MZ", name: "Mozambique" },
    Country { prefix: "260", iso: "ZM", name: "Zambia" },
    Country { prefix: "261", iso: "MG", name: "Madagascar" },
    Country { prefix: "262", iso: "RE", name: "Réunion" },
    Country { prefix: "262269", iso: "YT", name: "Mayotte" },
    Country { prefix: "262639", iso: "YT", name: "Mayotte" },
    Country { prefix: "263", iso: "ZW", name: "Zimbabwe" },
    Country { prefix: "264", iso: "NA", name: "Namibia" },
    Country { prefix: "265", iso: "MW", name: "Malawi" },
    Country { prefix: "266", iso: "LS", name: "Lesotho" },
    Country { prefix: "267", iso: "BW", name: "Botswana" },
    Country { prefix: "268", iso: "SZ", name: "Eswatini" },
    Country { prefix: "269", iso: "KM", name: "Comoros" },
    Country { prefix: "27", iso: "ZA", name: "South Africa" },
    Country { prefix: "290", iso: "SH", name: "Saint Helena and Tristan da Cunha" },
    Country { prefix: "291", iso: "ER", name: "Eritrea" },
    Country { prefix: "297", iso: "AW", name: "Aruba" },
    Country { prefix: "298", iso: "FO", name: "Faroe Islands" },
    Country { prefix: "299", iso: "GL", name: "Greenland" },
    Country { prefix: "30", iso: "GR", name: "Greece" },
    Country { prefix: "31", iso: "NL", name: "Netherlands" },
    Country { prefix: "32", iso: "BE", name: "Belgium" },
    Country { prefix: "33", iso: "FR", name: "France" },
    Country { prefix: "34", iso: "ES", name: "Spain" },
    Country { prefix: "350", iso: "GI", name: "Gibraltar" },
    Country { prefix: "351", iso: "PT", name: "Portugal" },
    Country { prefix: "352", iso: "LU", name: "Luxembourg" },
    Country { prefix: "353", iso: "IE", name: "Ireland" },
    Country { prefix: "354", iso: "IS", name: "Iceland" },
    Country { prefix: "355", iso: "AL", name: "Albania" },
    Country { prefix: "356", iso: "MT", name: "Malta" },
    Country { prefix: "357", iso: "CY", name: "Cyprus" },
    Country { prefix: "358", iso: "FI", name: "Finland" },
    Country { prefix: "35818", iso: "AX", name: "Åland Islands" },
    Country { prefix: "359", iso: "BG", name: "Bulgaria" },
    Country { prefix: "36", iso: "HU", name: "Hungary" },
    Country { prefix: "370", iso: "LT", name: "Lithuania" },
    Country { prefix: "371", iso: "LV", name: "Latvia" },
    Country { prefix: "372", iso: "EE", name: "Estonia" },
    Country { prefix: "373", iso: "MD", name: "Moldova" },
    Country { prefix: "374", iso: "AM", name: "Armenia" },
    Country { prefix: "375", iso: "BY", name: "Belarus" },
    Country { prefix: "376", iso: "AD", name: "Andorra" },
    Country { prefix: "377", iso: "MC", name: "Monaco" },
    Country { prefix: "378", iso: "SM", name: "San Marino" },
    Country { prefix: "379", iso: "VA", name: "Vatican City" },
    Country { prefix: "380", iso: "UA", name: "Ukraine" },
    Country { prefix: "381", iso: "RS", name: "Serbia" },
    Country { prefix: "382", iso: "ME", name: "Montenegro" },
    Country { prefix: "383", iso: "XK", name: "Kosovo" },
    Country { prefix: "385", iso: "HR", name: "Croatia" },
    Country { prefix: "386", iso: "SI", name: "Slovenia" },
    Country { prefix: "387", iso: "BA", name: "Bosnia and Herzegovina" },
    Country { prefix: "389", iso: "MK", name: "North Macedonia" },
    Country { prefix: "39", iso: "IT", name: "Italy" },
    Country { prefix: "3906698", iso: "VA", name: "Vatican City" },
    Country { prefix: "40", iso: "RO", name: "Romania" },
    Country { prefix: "41", iso: "CH", name: "Switzerland" },
    Country { prefix: "420", iso: "CZ", name: "Czechia" },
    Country { prefix: "421", iso: "SK", name: "Slovakia" },
    Country { prefix: "423", iso: "LI", name: "Liechtenstein" },
    Country { prefix: "43", iso: "AT", name: "Austria" },
    Country { prefix: "44", iso: "GB", name: "United Kingdom" },
    Country { prefix: "45", iso: "DK", name: "Denmark" },
    Country { prefix: "46", iso: "SE", name: "Sweden" },
    Country { prefix: "47", iso: "NO", name: "Norway" },
    Country { prefix: "4779", iso: "SJ", name: "Svalbard and Jan Mayen" },
    Country { prefix: "48", iso: "PL", name: "Poland" },
    Country { prefix: "49", iso: "DE", name: "Germany" },
    Country { prefix: "500", iso: "FK", name: "Falkland Islands" },
    Country { prefix: "501", iso: "BZ", name: "Belize" },
    Country { prefix: "502", iso: "GT", name: "Guatemala" },
    Country { prefix: "503", iso: "SV", name: "El Salvador" },
    Country { prefix: "504", iso: "HN", name: "Honduras" },
    Country { prefix: "505", iso: "NI", name: "Nicaragua" },
    Country { prefix: "506", iso: "CR", name: "Costa Rica" },
    Country { prefix: "507", iso: "PA", name: "Panama" },
    Country { prefix: "508", iso: "PM", name: "Saint Pierre and Miquelon" },
    Country { prefix: "509", iso: "HT", name: "Haiti" },
    Country { prefix: "51", iso: "PE", name: "Peru" },
    Country { prefix: "52", iso: "MX", name: "Mexico" },
    Country { prefix: "53", iso: "CU", name: "Cuba" },
    Country { prefix: "54", iso: "AR", name: "Argentina" },
    Country { prefix: "55", iso: "BR", name: "Brazil" },
    Country { prefix: "56", iso: "CL", name: "Chile" },
    Country { prefix: "57", iso: "CO", name: "Colombia" },
    Country { prefix: "58", iso: "VE", name: "Venezuela" },
    Country { prefix: "590", iso: "GP", name: "Guadeloupe" },
    Country { prefix: "591", iso: "BO", name: "Bolivia" },
    Country { prefix: "592", iso: "GY", name: "Guyana" },
    Country { prefix: "593", iso: "EC", name: "Ecuador" },
    Country { prefix: "594", iso: "GF", name: "French Guiana" },
    Country { prefix: "595", iso: "PY", name: "Paraguay" },
    Country { prefix: "596", iso: "MQ", name: "Martinique" },
    Country { prefix: "597", iso: "SR", name: "Suriname" },
    Country { prefix: "598", iso: "UY", name: "Uruguay" },
    Country { prefix: "599", iso: "CW", name: "Curaçao" },
    Country { prefix: "5993", iso: "BQ", name: "Caribbean Netherlands" },
    Country { prefix: "5994", iso: "BQ", name: "Caribbean Netherlands" },
    Country { prefix: "5997", iso: "BQ", name: "Caribbean Netherlands" },
    Country { prefix: "60", iso: "MY", name: "Malaysia" },
    Country { prefix: "61", iso: "AU", name: "Australia" },
    Country { prefix: "62", iso: "ID", name: "Indonesia" },
    Country { prefix: "63", iso: "PH", name: "Philippines" },
    Country { prefix: "64", iso: "NZ", name: "New Zealand" },
    Country { prefix: "65", iso: "SG", name: "Singapore" },
    Country { prefix: "66", iso: "TH", name: "Thailand" },
    Country { prefix: "670", iso: "TL", name: "Timor-Leste" },
    Country { prefix: "672", iso: "NF", name: "Norfolk Island" },
    Country { prefix: "673", iso: "BN", name: "Brunei" },
    Country { prefix: "674", iso: "NR", name: "Nauru" },
    Country { prefix: "675", iso: "PG", name: "Papua New Guinea" },
    Country { prefix: "676", iso: "TO", name: "Tonga" },
    Country { prefix: "677", iso: "SB", name: "Solomon Islands" },
    Country { prefix: "678", iso: "VU", name: "Vanuatu" },
    Country { prefix: "679", iso: "FJ", name: "Fiji" },
    Country { prefix: "680", iso: "PW", name: "Palau" },
    Country { prefix: "681", iso: "WF", name: "Wallis and Futuna" },
    Country { prefix: "682", iso: "CK", name: "Cook Islands" },
    Country { prefix: "683", iso: "NU", name: "Niue" },
    Country { prefix: "685", iso: "WS", name: "Samoa" },
    Country { prefix: "686", iso: "KI", name: "Kiribati" },
    Country { prefix: "687", iso: "NC", name: "New Caledonia" },
    Country { prefix: "688", iso: "TV", name: "Tuvalu" },
    Country { prefix: "689", iso: "PF", name: "French Polynesia" },
    Country { prefix: "690", iso: "TK", name: "Tokelau" },
    Country { prefix: "691", iso: "FM", name: "Micronesia" },
    Country { prefix: "692", iso: "MH", name: "Marshall Islands" },
    Country { prefix: "7", iso: "RU", name: "Russia" },
    Country { prefix: "76", iso: "KZ", name: "Kazakhstan" },
    Country { prefix: "77", iso: "KZ", name: "Kazakhstan" },
    Country { prefix: "800", iso: "XX", name: "International Freephone (UIFN)" },
    Country { prefix: "808", iso: "XX", name: "International Shared Cost Service" },
    Country { prefix: "81", iso: "JP", name: "Japan" },
    Country { prefix: "82", iso: "KR", name: "South Korea" },
    Country { prefix: "84", iso: "VN", name: "Vietnam" },
    Country { prefix: "850", iso: "KP", name: "North Korea" },
    Country { prefix: "852", iso: "HK", name: "Hong Kong" },
    Country { prefix: "853", iso: "MO", name: "Macao" },
    Country { prefix: "855", iso: "KH", name: "Cambodia" },
    Country { prefix: "856", iso: "LA", name: "Laos" },
    Country { prefix: "86", iso: "CN", name: "China" },
    Country { prefix: "870", iso: "XX", name: "Inmarsat" },
    Country { prefix: "878", iso: "XX", name: "Universal Personal Telecommunications" },
    Country { prefix: "880", iso: "BD", name: "Bangladesh" },
    Country { prefix: "881", iso: "XX", name: "Global Mobile Satellite System" },
    Country { prefix: "882", iso: "XX", name: "International Networks" },
    Country { prefix: "883", iso: "XX", name: "International Networks" },
    Country { prefix: "886", iso: "TW", name: "Taiwan" },
    Country { prefix: "888", iso: "XX", name: "Telecommunications for Disaster Relief (OCHA)" },
    Country { prefix: "90", iso: "TR", name: "Turkey" },
    Country { prefix: "91", iso: "IN", name: "India" },
    Country { prefix: "92", iso: "PK", name: "Pakistan" },
    Country { prefix: "93", iso: "AF", name: "Afghanistan" },
    Country { prefix: "94", iso: "LK", name: "Sri Lanka" },
    Country { prefix: "95", iso: "MM", name: "Myanmar" },
    Country { prefix: "960", iso: "MV", name: "Maldives" },
    Country { prefix: "961", iso: "LB", name: "Lebanon" },
    Country { prefix: "962", iso: "JO", name: "Jordan" },
    Country { prefix: "963", iso: "SY", name: "Syria" },
    Country { prefix: "964", iso: "IQ", name: "Iraq" },
    Country { prefix: "965", iso: "KW", name: "Kuwait" },
    Country { prefix: "966", iso: "SA", name: "Saudi Arabia" },
    Country { prefix: "967", iso: "YE", name: "Yemen" },
    Country { prefix: "968", iso: "OM", name: "Oman" },
    Country { prefix: "970", iso: "PS", name: "Palestine" },
    Country { prefix: "971", iso: "AE", name: "United Arab Emirates" },
    Country { prefix: "972", iso: "IL", name: "Israel" },
    Country { prefix: "973", iso: "BH", name: "Bahrain" },
    Country { prefix: "974", iso: "QA", name: "Qatar" },
    Country { prefix: "975", iso: "BT", name: "Bhutan" },
    Country { prefix: "976", iso: "MN", name: "Mongolia" },
    Country { prefix: "977", iso: "NP", name: "Nepal" },
    Country { prefix: "979", iso: "XX", name: "International Premium Rate Service" },
    Country { prefix: "98", iso: "IR", name: "Iran" },
    Country { prefix: "992", iso: "TJ", name: "Tajikistan" },
    Country { prefix: "993", iso: "TM", name: "Turkmenistan" },
    Country { prefix: "994", iso: "AZ", name: "Azerbaijan" },
    Country { prefix: "995", iso: "GE", name: "Georgia" },
    Country { prefix: "996", iso: "KG", name: "Kyrgyzstan" },
    Country { prefix: "998", iso: "UZ", name: "Uzbekistan" },
];

/// Slots: the ISO code of each, and each row's.
struct Slots {
    isos: [&'static str; MAX_COUNTRY_SLOTS],
    used: usize,
    of_row: [u8; COUNTRIES.len()],
}

const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut index = 0;
    while index < a.len() {
        if a[index] != b[index] {
            return false;
        }
        index += 1;
    }
    true
}

/// Numbers the countries at compile time; fails the build past [`MAX_COUNTRY_SLOTS`].
const fn number_slots() -> Slots {
    let mut slots = Slots {
        isos: [UNKNOWN; MAX_COUNTRY_SLOTS],
        used: 1,
        of_row: [0; COUNTRIES.len()],
    };
    let mut row = 0;
    while row < COUNTRIES.len() {
        let iso = COUNTRIES[row].iso;
        let mut slot = 1;
        while slot < slots.used && !same(slots.isos[slot], iso) {
            slot += 1;
        }
        if slot == slots.used {
            assert!(
                slots.used < MAX_COUNTRY_SLOTS,
                "more countries than MAX_COUNTRY_SLOTS"
            );
            slots.isos[slot] = iso;
            slots.used += 1;
        }
        slots.of_row[row] = slot as u8;
        row += 1;
    }
    slots
}

static SLOTS: Slots = number_slots();

/// Slots in use, slot 0 (unknown) included.
pub const COUNTRY_SLOTS: usize = number_slots().used;

// The bound on the table (`number_slots` fails the build first): countries, not rows, since
// several rows share a country.
const _: () = assert!(COUNTRY_SLOTS <= MAX_COUNTRY_SLOTS);

/// The longest row that `e164_digits` (digits, an optional leading '+') starts with, and the
/// country's slot (1..[`COUNTRY_SLOTS`]). `None` when no row matches or the text is not digits.
pub fn country_of(e164_digits: &str) -> Option<(usize, &'static Country)> {
    let digits = e164_digits.strip_prefix('+').unwrap_or(e164_digits);
    if !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    COUNTRIES
        .iter()
        .enumerate()
        .filter(|(_, country)| digits.starts_with(country.prefix))
        .max_by_key(|(_, country)| country.prefix.len())
        .map(|(row, country)| (usize::from(SLOTS.of_row[row]), country))
}

/// The slot of a country (ISO code, any case); `None` when no row has it.
pub fn index_of(iso: &str) -> Option<usize> {
    (1..SLOTS.used).find(|&slot| SLOTS.isos[slot].eq_ignore_ascii_case(iso))
}

/// The ISO code of a slot: [`UNKNOWN`] for 0 or a slot out of range.
pub fn label(index: usize) -> &'static str {
    if index < SLOTS.used {
        SLOTS.isos[index]
    } else {
        UNKNOWN
    }
}

/// The prefixes of a country (ISO code, any case), in table order; empty when unknown.
///
/// A prefix may contain other countries' longer ones ("1" of US holds CA's area codes and the
/// Caribbean's, "7" of RU holds KZ's): a rule on these prefixes alone would take them in too.
/// [`exceptions_of`] lists them.
pub fn prefixes_of(iso: &str) -> Vec<&'static str> {
    COUNTRIES
        .iter()
        .filter(|country| country.iso.eq_ignore_ascii_case(iso))
        .map(|country| country.prefix)
        .collect()
}

/// The rows of other countries inside the prefixes of `iso` (any case): what a rule on
/// [`prefixes_of`] must leave out to hold that country only (by longest prefix match).
pub fn exceptions_of(iso: &str) -> Vec<&'static Country> {
    let prefixes = prefixes_of(iso);
    COUNTRIES
        .iter()
        .filter(|country| {
            !country.iso.eq_ignore_ascii_case(iso)
                && prefixes
                    .iter()
                    .any(|prefix| country.prefix.starts_with(prefix))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn longest_prefix_wins() {
        let cases = [
            ("18765550100", Some("JM")),
            ("12125550100", Some("US")),
            ("14165550100", Some("CA")),
            ("16045550100", Some("CA")),
            ("18005550100", Some("US")),
            ("17875550100", Some("PR")),
            ("+16585550100", Some("JM")),
            ("77012345678", Some("KZ")),
            ("76012345678", Some("KZ")),
            ("74951234567", Some("RU")),
            ("442079460000", Some("GB")),
            ("44", Some("GB")),
            ("390612345678", Some("IT")),
            ("390669812345", Some("VA")),
            ("3791234", Some("VA")),
            ("4779021234", Some("SJ")),
            ("4721234567", Some("NO")),
            ("358181234567", Some("AX")),
            ("59971234567", Some("BQ")),
            ("59991234567", Some("CW")),
            ("262269601234", Some("YT")),
            ("262262123456", Some("RE")),
            ("4930123456", Some("DE")),
            ("33123456789", Some("FR")),
            ("2125551234", Some("MA")),
            ("2471234", Some("SH")),
            ("3831234567", Some("XK")),
            ("88212345678", Some(NON_GEOGRAPHIC)),
            ("80012345678", Some(NON_GEOGRAPHIC)),
            ("9791234", Some(NON_GEOGRAPHIC)),
            ("999123", None),
            ("2101234", None),
            ("", None),
            ("44a", None),
            ("+", None),
        ];
        for (digits, iso) in cases {
            let found = country_of(digits);
            assert_eq!(found.map(|(_, country)| country.iso), iso, "{digits}");
            if let Some((index, country)) = found {
                assert_eq!(label(index), country.iso, "{digits}");
                assert_eq!(index_of(country.iso), Some(index));
            }
        }
    }

    #[test]
    fn prefixes_and_exceptions() {
        let canada = prefixes_of("ca");
        assert!(canada.contains(&"1416"), "{canada:?}");
        assert!(canada.contains(&"1604") && canada.contains(&"1867"));
        assert!(canada.len() >= 56);
        assert!(canada.iter().all(|p| p.len() == 4 && p.starts_with('1')));
        assert_eq!(prefixes_of("KZ"), ["76", "77"]);
        assert_eq!(prefixes_of("Jm"), ["1658", "1876"]);
        assert_eq!(prefixes_of("DO"), ["1809", "1829", "1849"]);
        assert_eq!(prefixes_of("gb"), ["44"]);
        assert_eq!(prefixes_of("US"), ["1"]);
        assert_eq!(prefixes_of(NON_GEOGRAPHIC).len(), 9);
        assert!(prefixes_of("ZZ").is_empty());
        assert!(prefixes_of("").is_empty());
        assert!(prefixes_of("GBR").is_empty());

        let outside_us: Vec<&str> = exceptions_of("us").iter().map(|c| c.prefix).collect();
        assert!(outside_us.contains(&"1416") && outside_us.contains(&"1876"));
        assert!(exceptions_of("US").iter().all(|c| c.iso != "US"));
        let outside_ru: Vec<&str> = exceptions_of("RU").iter().map(|c| c.prefix).collect();
        assert_eq!(outside_ru, ["76", "77"]);
        assert!(exceptions_of("KZ").is_empty());
        assert!(exceptions_of("CA").is_empty());
        let outside_it: Vec<&str> = exceptions_of("IT").iter().map(|c| c.prefix).collect();
        assert_eq!(outside_it, ["3906698"]);
    }

    #[test]
    fn the_nanp_members_have_their_area_codes() {
        let members = [
            ("1242", "BS"),
            ("1246", "BB"),
            ("1264", "AI"),
            ("1268", "AG"),
            ("1284", "VG"),
            ("1340", "VI"),
            ("1345", "KY"),
            ("1441", "BM"),
            ("1473", "GD"),
            ("1649", "TC"),
            ("1658", "JM"),
            ("1876", "JM"),
            ("1664", "MS"),
            ("1670", "MP"),
            ("1671", "GU"),
            ("1684", "AS"),
            ("1721", "SX"),
            ("1758", "LC"),
            ("1767", "DM"),
            ("1784", "VC"),
            ("1787", "PR"),
            ("1939", "PR"),
            ("1809", "DO"),
            ("1829", "DO"),
            ("1849", "DO"),
            ("1868", "TT"),
            ("1869", "KN"),
        ];
        for (prefix, iso) in members {
            let row = COUNTRIES.iter().find(|c| c.prefix == prefix);
            assert_eq!(row.map(|c| c.iso), Some(iso), "{prefix}");
        }
        let nanp = COUNTRIES
            .iter()
            .filter(|c| c.prefix.starts_with('1'))
            .count();
        assert_eq!(nanp, 1 + prefixes_of("CA").len() + members.len());
    }

    #[test]
    fn rows_are_well_formed() {
        let mut seen = HashSet::new();
        for country in COUNTRIES {
            assert!(
                seen.insert(country.prefix),
                "duplicate prefix {}",
                country.prefix
            );
            assert!(
                (1..=7).contains(&country.prefix.len())
                    && country.prefix.bytes().all(|b| b.is_ascii_digit()),
                "{country:?}"
            );
            assert!(
                country.iso.len() == 2 && country.iso.bytes().all(|b| b.is_ascii_uppercase()),
                "{country:?}"
            );
            assert_ne!(country.iso, UNKNOWN);
            assert!(!country.name.is_empty(), "{country:?}");
            // Under a country code of 1 to 3 digits (its own row, or a shorter one).
            let code = COUNTRIES
                .iter()
                .filter(|c| country.prefix.starts_with(c.prefix))
                .min_by_key(|c| c.prefix.len())
                .unwrap();
            assert!(code.prefix.len() <= 3, "{country:?} under {code:?}");
        }
        // Country codes form a prefix-free code: every 1-3 digit row that lies inside another
        // row is a designated split (KZ in 7, VA's 379 is not inside 39).
        let codes: Vec<&Country> = COUNTRIES.iter().filter(|c| c.prefix.len() <= 3).collect();
        for code in &codes {
            let inside: Vec<&str> = codes
                .iter()
                .filter(|other| {
                    other.prefix != code.prefix && code.prefix.starts_with(other.prefix)
                })
                .map(|other| other.prefix)
                .collect();
            assert!(
                inside.is_empty() || ["76", "77"].contains(&code.prefix),
                "{code:?} in {inside:?}"
            );
        }
        assert!(codes.len() >= 215, "{}", codes.len());
    }

    #[test]
    fn slots_stay_within_bounds() {
        let isos: HashSet<&str> = COUNTRIES.iter().map(|c| c.iso).collect();
        assert_eq!(COUNTRY_SLOTS, isos.len() + 1);
        assert_eq!(label(0), UNKNOWN);
        assert_eq!(label(COUNTRY_SLOTS), UNKNOWN);
        assert_eq!(label(usize::MAX), UNKNOWN);
        assert_eq!(label(1), "US");
        assert_eq!(index_of("zz"), None);
        for slot in 1..COUNTRY_SLOTS {
            assert_eq!(index_of(label(slot)), Some(slot));
        }
        for (row, country) in COUNTRIES.iter().enumerate() {
            let (index, found) = country_of(country.prefix).unwrap();
            assert_eq!(found, country);
            assert_eq!(label(index), country.iso);
            assert!(usize::from(SLOTS.of_row[row]) == index);
        }
    }

    /// The rows of each release, fingerprinted: a failure here means a row was inserted, edited,
    /// moved or removed, which would move the kernel's slots. Append instead, then add a line.
    #[test]
    fn the_table_is_append_only() {
        const RELEASES: &[(usize, u64)] = &[(312, 0x5b3a_8e65_8665_6788)];
        let fingerprint = |rows: &[Country]| -> u64 {
            // FNV-1a over "prefix=iso;".
            let mut hash = 0xcbf2_9ce4_8422_2325u64;
            for country in rows {
                for byte in country
                    .prefix
                    .bytes()
                    .chain([b'='])
                    .chain(country.iso.bytes())
                    .chain([b';'])
                {
                    hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
                }
            }
            hash
        };
        for &(rows, expected) in RELEASES {
            assert!(COUNTRIES.len() >= rows, "rows removed");
            assert_eq!(
                fingerprint(&COUNTRIES[..rows]),
                expected,
                "the first {rows} rows changed"
            );
        }
    }
}
